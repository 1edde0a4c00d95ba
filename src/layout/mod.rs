//! STUB (lead's local placeholder; replaced by the layout branch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Safetensors,
    TorchZip,
    Gguf,
    Npy,
    Npz,
}
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub offset: u64,
    pub len: u64,
}
impl Tensor {
    pub fn float_width(&self) -> Option<u8> {
        match self.dtype.as_str() {
            "BF16" | "F16" => Some(2),
            "F32" => Some(4),
            "F64" => Some(8),
            _ => None,
        }
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub kind: Kind,
    pub tensors: Vec<Tensor>,
}
pub fn detect(file: &std::fs::File, len: u64) -> Option<Layout> {
    use std::os::unix::fs::FileExt;
    let mut h = [0u8; 8];
    file.read_exact_at(&mut h, 0).ok()?;
    let n = u64::from_le_bytes(h);
    if n > 100 << 20 || 8 + n > len {
        return None;
    }
    let mut j = vec![0u8; n as usize];
    file.read_exact_at(&mut j, 8).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&j).ok()?;
    let mut tensors = vec![];
    for (k, t) in v.as_object()? {
        if k == "__metadata__" {
            continue;
        }
        let o = t.get("data_offsets")?.as_array()?;
        let (a, b) = (o[0].as_u64()?, o[1].as_u64()?);
        tensors.push(Tensor {
            name: k.clone(),
            dtype: t.get("dtype")?.as_str()?.into(),
            shape: t
                .get("shape")?
                .as_array()?
                .iter()
                .filter_map(|x| x.as_u64())
                .collect(),
            offset: 8 + n + a,
            len: b - a,
        });
    }
    tensors.sort_by_key(|t| t.offset);
    Some(Layout {
        kind: Kind::Safetensors,
        tensors,
    })
}

//! Golden tests read out of `docs/FORMAT.md` itself: the manifest example made with the default
//! chunking parameters is rebuilt from the inputs the document describes, through the library
//! (`mvault::chunk`, `mvault::manifest`) and through `mvault push` on a local-directory vault,
//! and must come out as the document prints it. A drift in either the document or the code
//! fails here.

use std::collections::BTreeMap;

use mvault::chunk::{ChunkParams, Chunker, Digest, plan};
use mvault::manifest::{self, ChunkRef, Chunking, FileEntry, Manifest, TensorChunking};
use serde_json::Value;

use crate::common::{Backend, Env, s, write_file};

const FORMAT_MD: &str = include_str!("../docs/FORMAT.md");

/// The default-parameter example of FORMAT.md's "Manifest" section: its key, its input files
/// and the JSON document as printed.
struct Example {
    key: String,
    files: BTreeMap<String, Vec<u8>>,
    json: String,
}

/// Text of `hay` between `start` and the next `end` (both excluded), and the rest after `end`.
fn between<'a>(hay: &'a str, start: &str, end: &str) -> (&'a str, &'a str) {
    let from = hay
        .find(start)
        .unwrap_or_else(|| panic!("FORMAT.md: {start:?} not found"))
        + start.len();
    let len = hay[from..]
        .find(end)
        .unwrap_or_else(|| panic!("FORMAT.md: {end:?} not found after {start:?}"));
    (&hay[from..from + len], &hay[from + len + end.len()..])
}

fn number(text: &str, what: &str) -> usize {
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("FORMAT.md: {what} is not a number: {text:?}"))
}

/// Parses the example out of the document. The paragraph before the JSON block says, e.g.:
/// "Example, key `models/bert-base/versions/1.2.0.json` ... `config.json` is the 21 bytes
/// `{"hidden_size": 768}` + `\n`; `weights/model.bin` is the first 1500000 bytes of the BLAKE3
/// XOF of ASCII `mvault` ...".
fn example() -> Example {
    let (key, rest) = between(FORMAT_MD, "Example, key `", "`");
    let (para, rest) = between(rest, "", "```json\n");
    // Line breaks of the paragraph are spaces.
    let para = para.split_whitespace().collect::<Vec<_>>().join(" ");
    let (json, _) = between(rest, "", "\n```");

    let mut files = BTreeMap::new();
    let (len, after) = between(&para, "`config.json` is the ", " bytes `");
    let (text, after) = between(after, "", "`");
    assert!(
        after.starts_with(" + `\\n`"),
        "FORMAT.md: config.json is described as {text:?}{after:?}"
    );
    let config = format!("{text}\n").into_bytes();
    assert_eq!(config.len(), number(len, "config.json length"));
    files.insert("config.json".to_string(), config);

    let (len, after) = between(&para, "`weights/model.bin` is the first ", " bytes of the ");
    let (ascii, _) = between(after, "BLAKE3 XOF of ASCII `", "`");
    let mut weights = vec![0u8; number(len, "weights/model.bin length")];
    blake3::Hasher::new()
        .update(ascii.as_bytes())
        .finalize_xof()
        .fill(&mut weights);
    files.insert("weights/model.bin".to_string(), weights);

    Example {
        key: key.to_string(),
        files,
        json: json.to_string(),
    }
}

/// JSON text without the whitespace between tokens (strings kept as they are), so the printed
/// example and serde's output compare field order and number formatting, not layout.
fn compact(json: &str) -> String {
    let (mut out, mut in_str, mut escaped) = (String::new(), false, false);
    for c in json.chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// The file entry of `data` at `path`, cut with the default parameters.
fn file_entry(path: &str, data: &[u8]) -> FileEntry {
    let chunks = Chunker::new(data, ChunkParams::DEFAULT)
        .map(|c| {
            let c = c.expect("in-memory read");
            ChunkRef {
                id: Digest::of(&c.data),
                size: c.data.len() as u64,
                pack: None,
            }
        })
        .collect();
    FileEntry {
        path: path.to_string(),
        size: data.len() as u64,
        digest: Digest::of(data),
        chunks,
        layout: None,
    }
}

/// The library, given the example's inputs and metadata, builds exactly the printed manifest:
/// chunk cuts and ids, file digests, version checksum, sizes, chunking record, field order and
/// number formatting.
#[test]
fn manifest_example_matches_the_library() {
    let ex = example();
    let doc: Manifest = serde_json::from_str(&ex.json).expect("FORMAT.md example parses");
    doc.validate()
        .expect("FORMAT.md example is a valid manifest");
    assert_eq!(
        ex.key,
        format!(
            "models/{}/versions/{}.json",
            doc.model_name,
            doc.version.trim_start_matches('v')
        )
    );

    let files: Vec<FileEntry> = ex
        .files
        .iter()
        .map(|(path, data)| file_entry(path, data))
        .collect();
    let p = ChunkParams::DEFAULT;
    let built = Manifest {
        format: manifest::FORMAT,
        model_name: doc.model_name.clone(),
        version: doc.version.clone(),
        created_at: doc.created_at.clone(),
        created_by: doc.created_by.clone(),
        description: doc.description.clone(),
        performance_metrics: doc.performance_metrics.clone(),
        training_config: doc.training_config.clone(),
        tags: doc.tags.clone(),
        extra: Default::default(),
        file_size: files.iter().map(|f| f.size).sum(),
        checksum: manifest::version_checksum(&files),
        chunking: Chunking {
            algorithm: "mvault-layout-1".into(),
            min_bytes: p.min_bytes,
            avg_bytes: p.avg_bytes,
            max_bytes: p.max_bytes,
            tensor: Some(TensorChunking {
                min_bytes: plan::TENSOR.min_bytes,
                avg_bytes: plan::TENSOR.avg_bytes,
                max_bytes: plan::TENSOR.max_bytes,
                group_bytes: plan::GROUP_BYTES,
            }),
        },
        files,
    };
    built.validate().expect("built manifest is valid");
    // Field by field first, for a readable failure.
    assert_eq!(
        built.files, doc.files,
        "files (digests, chunk ids and sizes)"
    );
    assert_eq!(built.checksum, doc.checksum, "version checksum");
    assert_eq!(built.file_size, doc.file_size);
    assert_eq!(built.chunking, doc.chunking);
    assert_eq!(
        compact(&String::from_utf8(built.to_json()).unwrap()),
        compact(&ex.json),
        "serialized manifest differs from FORMAT.md's example"
    );
}

/// `mvault push` of the example's inputs with its metadata stores the printed manifest (but
/// for `created_at` and `created_by`, which come from the clock and the machine), as serde
/// pretty JSON with a final newline, under the printed key.
#[test]
fn manifest_example_matches_push() {
    let ex = example();
    let doc: Value = serde_json::from_str(&ex.json).unwrap();
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    for (path, data) in &ex.files {
        write_file(&src.join(path), data);
    }
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let mut args: Vec<String> = ["push", s(&src), "--name"]
        .into_iter()
        .map(String::from)
        .collect();
    args.push(text(&doc["model_name"]));
    args.push("--version".into());
    args.push(text(&doc["version"]));
    args.push("--description".into());
    args.push(text(&doc["description"]));
    for (field, flag) in [
        ("performance_metrics", "--metric"),
        ("training_config", "--param"),
        ("tags", "--tag"),
    ] {
        for (k, v) in doc[field].as_object().unwrap() {
            args.push(flag.into());
            args.push(format!("{k}={}", text(v)));
        }
    }
    env.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let stored = std::fs::read(env.path("vault").join(&ex.key)).expect("manifest at the key");
    let mut m = Manifest::from_json(&stored).expect("stored manifest is valid");
    assert_eq!(m.to_json(), stored, "stored as serde pretty JSON plus \\n");
    assert!(
        m.created_by.tool.starts_with("mvault "),
        "{:?}",
        m.created_by
    );
    assert!(m.created_at.ends_with('Z'), "{}", m.created_at);
    m.created_at = text(&doc["created_at"]);
    m.created_by = serde_json::from_value(doc["created_by"].clone()).unwrap();
    assert_eq!(
        compact(&String::from_utf8(m.to_json()).unwrap()),
        compact(&ex.json),
        "pushed manifest differs from FORMAT.md's example"
    );
}

/// FORMAT.md's format-2 vector ("Chunking (format 2)"): a safetensors file whose header and
/// data the document gives is pushed, and its chunks (offset, size, id) and tensor index come
/// out as the document lists them.
#[test]
fn format2_safetensors_vector() {
    let (section, _) = between(FORMAT_MD, "**Format-2 golden vector**", "\n\n**");
    let (header, rest) = between(section, "the header `", "`");
    let (len, rest) = between(rest, "then the ", " bytes of the BLAKE3 XOF of ASCII `");
    let (ascii, rest) = between(rest, "", "`");
    let (table, _) = between(rest, "```\n", "```");
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    let mut data = vec![0u8; number(len, "data length")];
    blake3::Hasher::new()
        .update(ascii.as_bytes())
        .finalize_xof()
        .fill(&mut data);
    file.extend_from_slice(&data);

    let env = Env::new(Backend::Fs);
    let path = env.path("model.safetensors");
    write_file(&path, &file);
    env.ok(&["push", s(&path), "--name", "golden", "--version", "2.0.0"]);
    let stored =
        std::fs::read(env.path("vault").join("models/golden/versions/2.0.0.json")).unwrap();
    let m = Manifest::from_json(&stored).unwrap();
    let f = &m.files[0];
    assert_eq!(f.digest, Digest::of(&file), "file digest");
    let mut offset = 0;
    let got: Vec<String> = f
        .chunks
        .iter()
        .map(|c| {
            let line = format!("{offset} {} {}", c.size, c.id);
            offset += c.size;
            line
        })
        .collect();
    let want: Vec<String> = table
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("offset"))
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(got, want, "chunks of the format-2 vector");
    let layout = f.layout.as_ref().expect("a tensor index");
    let index: Vec<String> = layout
        .tensors
        .iter()
        .map(|t| {
            format!(
                "{} {} {:?} {} {}",
                t.name, t.dtype, t.shape, t.offset, t.len
            )
        })
        .collect();
    let (listed, _) = between(section, "Tensor index: ", ".\n");
    let listed: Vec<String> = listed
        .split("; ")
        .map(|t| t.trim_matches('`').to_string())
        .collect();
    assert_eq!(index, listed, "tensor index of the format-2 vector");
}

/// A safetensors file of bf16 tensors with weight-like values (std about 0.02): the names and
/// element counts given, in order. Each tensor's values depend only on `seed` and its name,
/// so a tensor keeps its bytes when others are inserted or changed.
pub fn bf16_safetensors(seed: u64, tensors: &[(&str, usize)]) -> Vec<u8> {
    let (mut header, mut data) = (serde_json::Map::new(), Vec::new());
    for (name, n) in tensors {
        let h = blake3::hash(name.as_bytes());
        let mut rng = fastrand::Rng::with_seed(
            seed ^ u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap()),
        );
        let start = data.len();
        for _ in 0..*n {
            let x: f32 = (0..4).map(|_| rng.f32() - 0.5).sum::<f32>() * 0.035;
            data.extend_from_slice(&x.to_le_bytes()[2..]);
        }
        let entry = serde_json::json!({
            "dtype": "BF16", "shape": [n], "data_offsets": [start, data.len()]
        });
        header.insert(name.to_string(), entry);
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    out
}

/// Format 2 versions join the 0.1.0 fixture vault (format 1): old and new versions pull
/// byte-exact side by side, and verify, gc and sync see all of them.
#[test]
fn format2_versions_join_a_format1_vault() {
    let env = Env::new(Backend::Fs);
    crate::common::unpack_format1_vault(&env);
    let vault = env.path("vault");
    let v = s(&vault);
    let old = env.path("old");
    env.ok(&["-r", v, "pull", "fixture@1.1.0", "--to", s(&old)]);

    // The new version: the old files plus a checkpoint with float planes and a tensor index.
    let new = env.path("new");
    for f in crate::common::files(&old) {
        write_file(&new.join(&f), &std::fs::read(old.join(&f)).unwrap());
    }
    let model = bf16_safetensors(7, &[("norm", 512), ("proj", 1024 * 1024), ("head", 3000)]);
    write_file(&new.join("model.safetensors"), &model);
    env.ok(&[
        "-r",
        v,
        "push",
        s(&new),
        "--name",
        "fixture",
        "--version",
        "2.0.0",
    ]);
    let stored = std::fs::read(vault.join("models/fixture/versions/2.0.0.json")).unwrap();
    let m = Manifest::from_json(&stored).unwrap();
    assert_eq!(m.format, 2);
    let entry = m
        .files
        .iter()
        .find(|f| f.path == "model.safetensors")
        .unwrap();
    let layout = entry.layout.as_ref().expect("tensor index");
    let names: Vec<&str> = layout.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["norm", "proj", "head"]);
    // The unchanged weights.bin reuses the format-1 chunks: FastCDC cuts it as 0.1.0 did.
    let old_m = Manifest::from_json(
        &std::fs::read(vault.join("models/fixture/versions/1.1.0.json")).unwrap(),
    )
    .unwrap();
    let chunks_of = |m: &Manifest| m.files.iter().find(|f| f.path == "weights.bin").cloned();
    assert_eq!(
        chunks_of(&m).unwrap().chunks,
        chunks_of(&old_m).unwrap().chunks
    );
    // The large tensor is stored as byte planes, smaller than raw.
    let planes = entry.chunks.iter().any(|c| {
        let id = c.id.to_hex();
        let obj = std::fs::read(vault.join(format!("chunks/{}/{id}", &id[..2]))).unwrap();
        obj[4] == 2 && (obj.len() as u64) < c.size * 9 / 10
    });
    assert!(
        planes,
        "no chunk of the checkpoint was stored as byte planes"
    );

    for (version, want) in [("2.0.0", &new), ("1.1.0", &old)] {
        let out = env.path(&format!("out-{version}"));
        let cache = env.path(&format!("cache-{version}"));
        env.ok(&[
            "-r",
            v,
            "--cache-dir",
            s(&cache),
            "pull",
            &format!("fixture@{version}"),
            "--to",
            s(&out),
        ]);
        crate::common::assert_same_tree(want, &out);
    }
    env.ok(&["-r", v, "verify", "fixture"]);
    env.ok(&["-r", v, "gc", "--dry-run"]);
    let copy = env.path("copy");
    env.ok(&["sync", "--from", v, "--to", s(&copy), "fixture"]);
    env.ok(&["-r", s(&copy), "verify", "fixture"]);
    let out = env.path("out-copy");
    env.ok(&["-r", s(&copy), "pull", "fixture@2.0.0", "--to", s(&out)]);
    crate::common::assert_same_tree(&new, &out);
}

/// Every recognized layout (the fixtures of `tests/golden/layouts/`) is pushed with its tensor
/// index, as the parser reads it, and pulls back byte-exact; a file whose header is damaged
/// is pushed too, cut as an unknown file, with no index.
#[test]
fn every_layout_pushes_with_its_tensor_index() {
    let env = Env::new(Backend::Fs);
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/layouts");
    let src = env.path("src");
    let cases = [
        ("tiny.safetensors", "safetensors"),
        ("tiny.pt", "torch-zip"),
        ("tiny-zip64.pt", "torch-zip"),
        ("tiny.gguf", "gguf"),
        ("tiny.npy", "npy"),
        ("tiny.npz", "npz"),
    ];
    for (name, _) in cases {
        write_file(&src.join(name), &std::fs::read(golden.join(name)).unwrap());
    }
    // Not a checkpoint: a safetensors file whose header length points past its end.
    let mut broken = std::fs::read(golden.join("tiny.safetensors")).unwrap();
    broken[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    write_file(&src.join("broken.safetensors"), &broken);
    env.ok(&["push", s(&src), "--name", "layouts", "--version", "1.0.0"]);

    let stored =
        std::fs::read(env.path("vault").join("models/layouts/versions/1.0.0.json")).unwrap();
    let m = Manifest::from_json(&stored).unwrap();
    for (name, kind) in cases {
        let f = m.files.iter().find(|f| f.path == name).unwrap();
        let layout = f
            .layout
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no tensor index"));
        assert_eq!(serde_json::to_value(layout.kind).unwrap(), kind, "{name}");
        let table: Value =
            serde_json::from_slice(&std::fs::read(golden.join(format!("{name}.json"))).unwrap())
                .unwrap();
        let ranges = |v: &Value| -> Vec<(u64, u64)> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|t| (t["offset"].as_u64().unwrap(), t["len"].as_u64().unwrap()))
                .collect()
        };
        let index = serde_json::to_value(&layout.tensors).unwrap();
        assert_eq!(ranges(&index), ranges(&table), "{name}: tensor byte ranges");
    }
    let broken = m
        .files
        .iter()
        .find(|f| f.path == "broken.safetensors")
        .unwrap();
    assert!(broken.layout.is_none());
    let out = env.path("out");
    env.ok(&["pull", "layouts@1.0.0", "--to", s(&out)]);
    crate::common::assert_same_tree(&src, &out);
}

fn named(t: &[(String, usize)]) -> Vec<(&str, usize)> {
    t.iter().map(|(n, c)| (n.as_str(), *c)).collect()
}

/// Format 2's dedupe follows the tensors: a version that rewrites one large tensor stores about
/// that tensor's bytes (as stored, compressed), and one that inserts a small tensor mid-file
/// (shifting every later offset) stores little more than the inserted bytes and the header.
#[test]
fn format2_dedupe_follows_tensors() {
    let env = Env::new(Backend::Fs);
    let mib = 1024 * 1024 / 2; // bf16 elements per MiB
    let mut tensors: Vec<(String, usize)> = Vec::new();
    for i in 0..12 {
        tensors.push((format!("l{i:02}.norm"), 1024));
        tensors.push((
            format!("l{i:02}.w"),
            if i % 3 == 0 { 3 * mib } else { mib + 4096 },
        ));
    }
    let dir = env.path("m");
    let file = dir.join("model.safetensors");
    let push = |data: &[u8], version: &str| -> u64 {
        let before = env.stored_chunk_bytes();
        write_file(&file, data);
        env.ok(&["push", s(&dir), "--name", "m", "--version", version]);
        env.stored_chunk_bytes() - before
    };
    push(&bf16_safetensors(1, &named(&tensors)), "1.0.0");

    // Insert 56 KiB mid-file (safetensors orders data by name: "l03.a" sorts before "l03.norm").
    let mut inserted = tensors.clone();
    inserted.insert(6, ("l03.a".to_string(), 28 * 1024));
    let added = push(&bf16_safetensors(1, &named(&inserted)), "1.1.0");
    assert!(
        added <= 56 * 1024 + 64 * 1024,
        "an inserted 56 KiB tensor stored {added} bytes"
    );

    // Rewrite l06.w (3 MiB): same names and shapes, other values.
    let v1 = bf16_safetensors(1, &named(&tensors));
    let other = bf16_safetensors(2, &named(&tensors));
    let start = 8 + u64::from_le_bytes(v1[..8].try_into().unwrap()) as usize;
    let (lo, hi) = {
        let h: Value = serde_json::from_slice(&v1[8..start]).unwrap();
        let o = &h["l06.w"]["data_offsets"];
        (
            start + o[0].as_u64().unwrap() as usize,
            start + o[1].as_u64().unwrap() as usize,
        )
    };
    let mut rewritten = v1.clone();
    rewritten[lo..hi].copy_from_slice(&other[lo..hi]);
    let added = push(&rewritten, "1.2.0");
    // Stored compressed (about 0.68 of raw for bf16), and nothing else.
    let changed = (hi - lo) as u64;
    assert!(
        added <= changed * 105 / 100 && added >= changed / 2,
        "rewriting {changed} bytes stored {added}"
    );
    let out = env.path("out");
    env.ok(&["pull", "m@1.2.0", "--to", s(&out)]);
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        rewritten
    );
    // The same bytes again send nothing, small chunks (the header, the norms) included.
    let j = env.json(&["push", s(&dir), "--name", "m", "--version", "1.3.0"]);
    assert_eq!(j["summary"]["bytes_remote"], 0, "{j}");
    assert_eq!(j["summary"]["chunks_new"], 0, "{j}");
}

/// FORMAT.md's "Packs" golden vector: the pack bytes, its key, its index and a manifest entry,
/// as printed.
struct PackVector {
    key: String,
    bytes: Vec<u8>,
    index: String,
    entry: String,
}

fn pack_vector() -> PackVector {
    let (_, section) = between(FORMAT_MD, "**Golden vector** (`golden_pack_vector`", ")");
    let (key, rest) = between(section, "The pack\n`", "`");
    let (block, rest) = between(rest, "```\n", "\n```");
    let hex: String = block
        .lines()
        .flat_map(|l| l.split_whitespace().take_while(|t| *t != "offset"))
        .collect();
    let (index, rest) = between(rest, "Its index is `", "`");
    let (entry, _) = between(rest, "second chunk is\n`", "`");
    PackVector {
        key: key.to_string(),
        bytes: hex::decode(hex).expect("FORMAT.md: pack bytes are hex"),
        index: index.to_string(),
        entry: entry.to_string(),
    }
}

/// The printed pack, index and entry agree with the library: the index parses and tiles the
/// pack, each range decodes to its chunk, the key parses back to the entry's pack id.
#[test]
fn golden_pack_vector() {
    let v = pack_vector();
    assert_eq!(v.bytes.len(), 50, "FORMAT.md says 50 bytes");
    let index = mvault::pack::Index::from_json(v.index.as_bytes()).expect("index parses");
    assert_eq!(index.pack_len(), 50);
    assert_eq!(index.to_json(), format!("{}\n", v.index).into_bytes());
    let plain: Vec<Vec<u8>> = index
        .chunks
        .iter()
        .map(|e| {
            let object = &v.bytes[e.offset as usize..(e.offset + e.len) as usize];
            mvault::chunk::decode(&e.id, object)
                .expect("range decodes to its chunk")
                .to_vec()
        })
        .collect();
    assert_eq!(plain, [b"hello".to_vec(), b"packed world!".to_vec()]);
    let entry: ChunkRef = serde_json::from_str(&v.entry).expect("entry parses");
    let pack = entry.pack.expect("entry is packed");
    assert_eq!(mvault::pack::parse_key(&v.key), Some((pack.id, false)));
    assert_eq!(
        (entry.id, pack.offset, pack.len),
        (
            index.chunks[1].id,
            index.chunks[1].offset,
            index.chunks[1].len
        )
    );
    assert_eq!(serde_json::to_string(&entry).unwrap(), v.entry);
}

/// A vault holding FORMAT.md's pack and a format-3 manifest of one file made of its two
/// chunks pulls byte-exact; with the pack gone and the chunks stored loose (as `sync` leaves
/// them) it still does; with neither, the pull fails as damaged (exit 5) and places nothing.
fn golden_pack_pulls(backend: Backend) {
    let v = pack_vector();
    let env = Env::new(backend);
    let index = mvault::pack::Index::from_json(v.index.as_bytes()).unwrap();
    let (pack_id, _) = mvault::pack::parse_key(&v.key).unwrap();
    env.write_object(&v.key, v.bytes.clone());
    env.write_object(&mvault::pack::index_key(&pack_id), index.to_json());
    let data = b"hellopacked world!".to_vec();
    let chunks = index
        .chunks
        .iter()
        .zip([5u64, 13])
        .map(|(e, size)| ChunkRef {
            id: e.id,
            size,
            pack: Some(mvault::pack::PackRef {
                id: pack_id,
                offset: e.offset,
                len: e.len,
            }),
        })
        .collect();
    let files = vec![FileEntry {
        path: "f.txt".into(),
        size: data.len() as u64,
        digest: Digest::of(&data),
        chunks,
        layout: None,
    }];
    let m = Manifest {
        format: manifest::PACKED_FORMAT,
        model_name: "golden".into(),
        version: "1.0.0".into(),
        created_at: "2026-12-02T00:00:00.000Z".into(),
        created_by: Default::default(),
        description: String::new(),
        performance_metrics: Default::default(),
        training_config: Default::default(),
        tags: Default::default(),
        extra: Default::default(),
        file_size: data.len() as u64,
        checksum: manifest::version_checksum(&files),
        chunking: Chunking {
            algorithm: "mvault-layout-1".into(),
            min_bytes: 1,
            avg_bytes: 1,
            max_bytes: 1,
            tensor: None,
        },
        files,
    };
    m.validate().expect("valid format-3 manifest");
    env.write_object("models/golden/versions/1.0.0.json", m.to_json());

    let out = env.path("out");
    env.ok(&["pull", "golden@1.0.0", "--to", s(&out)]);
    assert_eq!(std::fs::read(out.join("f.txt")).unwrap(), data);
    let report = env.json(&["verify", "golden", "--json"]);
    assert_eq!(report["chunks_checked"].as_u64(), Some(2), "{report}");
    assert!(report["damaged"].as_array().unwrap().is_empty(), "{report}");

    env.delete_object(&v.key);
    for e in &index.chunks {
        let hex = e.id.to_hex();
        let object = v.bytes[e.offset as usize..(e.offset + e.len) as usize].to_vec();
        env.write_object(&format!("chunks/{}/{hex}", &hex[..2]), object);
    }
    let out = env.path("out-loose");
    env.ok_in("cache-2", &["pull", "golden@1.0.0", "--to", s(&out)]);
    assert_eq!(std::fs::read(out.join("f.txt")).unwrap(), data);

    for e in &index.chunks {
        let hex = e.id.to_hex();
        env.delete_object(&format!("chunks/{}/{hex}", &hex[..2]));
    }
    let out = env.path("out-none");
    let err = env.fails_in("cache-3", 5, &["pull", "golden@1.0.0", "--to", s(&out)]);
    assert!(err.contains("missing"), "{err}");
    assert!(!out.join("f.txt").exists());
}

#[test]
fn golden_pack_pulls_fs() {
    golden_pack_pulls(Backend::Fs);
}

#[test]
fn golden_pack_pulls_s3() {
    golden_pack_pulls(Backend::S3);
}

//! `info --json`'s document, a version's metadata: shared by the CLI and `mvault serve`'s
//! `/api/models/{name}/{version}`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::chunk::Digest;
use crate::manifest::{FileLayout, Manifest, Origin};

/// `info --json`: a version's metadata (field names of the contract).
#[derive(Debug, Serialize)]
pub struct Info<'a> {
    pub model_name: &'a str,
    pub version: &'a str,
    pub created_at: &'a str,
    pub created_by: &'a Origin,
    pub file_size: u64,
    pub checksum: Digest,
    pub description: &'a str,
    pub performance_metrics: &'a Map<String, Value>,
    pub training_config: &'a Map<String, Value>,
    pub tags: &'a BTreeMap<String, String>,
    pub extra: &'a Map<String, Value>,
    pub files: Vec<InfoFile<'a>>,
    /// Who signed the version; `null` when it is unsigned.
    pub signature: Option<super::SignatureInfo>,
}

#[derive(Debug, Serialize)]
pub struct InfoFile<'a> {
    pub path: &'a str,
    pub size: u64,
    pub digest: Digest,
    /// Number of chunks.
    pub chunks: usize,
    /// Format 2: the tensor index of a recognized model file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<&'a FileLayout>,
}

impl<'a> From<&'a Manifest> for Info<'a> {
    fn from(m: &'a Manifest) -> Self {
        Info {
            model_name: &m.model_name,
            version: &m.version,
            created_at: &m.created_at,
            created_by: &m.created_by,
            file_size: m.file_size,
            checksum: m.checksum,
            description: &m.description,
            performance_metrics: &m.performance_metrics,
            training_config: &m.training_config,
            tags: &m.tags,
            extra: &m.extra,
            signature: None,
            files: m
                .files
                .iter()
                .map(|f| InfoFile {
                    path: &f.path,
                    size: f.size,
                    digest: f.digest,
                    chunks: f.chunks.len(),
                    layout: f.layout.as_ref(),
                })
                .collect(),
        }
    }
}

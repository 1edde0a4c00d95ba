//! `usage`: logical versus stored bytes, dedupe ratio and an estimated monthly storage bill.
//!
//! Logical bytes are what users pushed (the sum of each version's `file_size`); stored bytes
//! are the chunk objects as they sit on the store (after dedupe and zstd). Sizes come from one
//! listing of `chunks/` and `models/`, plus one read per manifest.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::Result;
use super::{all_versions, chunk_id, each_manifest, present};
use crate::chunk::Digest;
use crate::vault::Vault;

/// A storage price: USD per GB-month, GB = 10^9 bytes as on price sheets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Remote scheme it applies to: `s3`, `gs`, `az`, `oss`.
    pub provider: Cow<'static, str>,
    /// Storage class and region the figure is for.
    pub tier: Cow<'static, str>,
    pub usd_per_gb_month: f64,
}

/// Default price table: first-tier list prices for standard (hot) storage as published by
/// each provider. The figures were supplied with the feature request in 2026-11 and were not
/// re-checked against the providers' pages by this code; edit `PRICES` (or pass another
/// table to [`usage`]) to update. Requests, egress and minimum-duration fees are not included.
/// - S3 Standard, us-east-1, first 50 TB: 0.023 USD;
/// - GCS Standard, regional us-central1: 0.020 USD (US multi-region is 0.026);
/// - Azure Blob Hot LRS, East US, first 50 TB: 0.018 USD;
/// - Aliyun OSS Standard LRS, China mainland: 0.12 CNY, about 0.017 USD at 7.1 CNY/USD.
pub const PRICES: &[Price] = &[
    Price {
        provider: Cow::Borrowed("s3"),
        tier: Cow::Borrowed("S3 Standard, us-east-1, first 50 TB"),
        usd_per_gb_month: 0.023,
    },
    Price {
        provider: Cow::Borrowed("gs"),
        tier: Cow::Borrowed("GCS Standard, us-central1 (regional)"),
        usd_per_gb_month: 0.020,
    },
    Price {
        provider: Cow::Borrowed("az"),
        tier: Cow::Borrowed("Azure Blob Hot LRS, East US, first 50 TB"),
        usd_per_gb_month: 0.018,
    },
    Price {
        provider: Cow::Borrowed("oss"),
        tier: Cow::Borrowed("OSS Standard LRS, China mainland (0.12 CNY)"),
        usd_per_gb_month: 0.017,
    },
];

/// Usage of one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelUsage {
    pub model: String,
    pub versions: u64,
    /// Sum of `file_size` over its versions, in bytes.
    pub logical_bytes: u64,
    /// Distinct chunks its versions reference.
    pub unique_chunks: u64,
    /// Stored bytes of those chunks. Chunks shared between models count for each, so these
    /// do not add up to the total.
    pub stored_bytes: u64,
    /// Referenced chunks absent from the listing (run `verify`).
    pub missing_chunks: u64,
}

/// Estimated monthly storage cost of the vault on one provider.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostEstimate {
    pub provider: String,
    pub tier: String,
    pub usd_per_gb_month: f64,
    /// `billed_bytes` / 10^9 × `usd_per_gb_month`.
    pub usd_per_month: f64,
}

/// Outcome of [`usage`] (`usage --json` prints it). Bytes are bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    pub models: Vec<ModelUsage>,
    pub versions: u64,
    /// Sum of `file_size` over all versions.
    pub logical_bytes: u64,
    /// All chunk and pack objects (with pack indexes), as stored.
    pub stored_bytes: u64,
    /// Loose chunk objects (`chunks/`).
    pub chunk_objects: u64,
    /// Pack objects and their indexes (`packs/`).
    pub pack_objects: u64,
    /// Manifests and alias documents.
    pub metadata_objects: u64,
    pub metadata_bytes: u64,
    /// Every object under `chunks/`, `packs/` and `models/`.
    pub objects: u64,
    /// `stored_bytes + metadata_bytes`: what the store bills.
    pub billed_bytes: u64,
    /// `logical_bytes / stored_bytes` (dedupe and compression together); `None` when nothing
    /// is stored.
    pub dedupe_ratio: Option<f64>,
    pub monthly_cost: Vec<CostEstimate>,
}

#[derive(Default)]
struct Acc {
    versions: u64,
    logical: u64,
    /// Stored id of each chunk its versions reference, and the pack range of one of them.
    chunks: HashMap<Digest, Option<crate::pack::PackRef>>,
}

/// Measures the vault and prices it with `prices` (usually [`PRICES`]). Fails if a manifest
/// cannot be read or parsed (numbers from a partial view would mislead).
pub async fn usage(vault: &Vault, prices: &[Price]) -> Result<UsageReport> {
    let remote = vault.remote();
    remote.sealing().await?;
    let sizes: HashMap<Digest, u64> = remote
        .list_objects("chunks/")
        .await?
        .into_iter()
        .filter_map(|o| Some((chunk_id(&o.key)?, o.size)))
        .collect();
    let pack_listing = remote.list_objects("packs/").await?;
    let packs: HashSet<Digest> = pack_listing
        .iter()
        .filter_map(|o| crate::pack::parse_key(&o.key).filter(|k| !k.1).map(|k| k.0))
        .collect();
    let meta = remote.list_objects("models/").await?;
    let mut per_model: BTreeMap<String, Acc> = BTreeMap::new();
    each_manifest(vault, all_versions(remote).await?, |n, _, r| {
        if let Some(m) = present(r)? {
            let acc = per_model.entry(n.to_string()).or_default();
            acc.versions += 1;
            acc.logical += m.file_size;
            for c in m.files.iter().flat_map(|f| &f.chunks) {
                let slot = acc.chunks.entry(remote.stored_id(&c.id)).or_default();
                *slot = slot.or(c.pack);
            }
        }
        Ok(())
    })
    .await?;
    let models: Vec<ModelUsage> = per_model
        .into_iter()
        .map(|(model, acc)| model_usage(model, acc, (&sizes, &packs)))
        .collect();
    let stored_bytes: u64 =
        sizes.values().sum::<u64>() + pack_listing.iter().map(|o| o.size).sum::<u64>();
    let metadata_bytes: u64 = meta.iter().map(|o| o.size).sum();
    let logical_bytes: u64 = models.iter().map(|m| m.logical_bytes).sum();
    let billed_bytes = stored_bytes + metadata_bytes;
    Ok(UsageReport {
        versions: models.iter().map(|m| m.versions).sum(),
        logical_bytes,
        stored_bytes,
        chunk_objects: sizes.len() as u64,
        pack_objects: pack_listing.len() as u64,
        metadata_objects: meta.len() as u64,
        metadata_bytes,
        objects: (sizes.len() + pack_listing.len() + meta.len()) as u64,
        billed_bytes,
        dedupe_ratio: (stored_bytes > 0).then(|| logical_bytes as f64 / stored_bytes as f64),
        monthly_cost: prices.iter().map(|p| cost(p, billed_bytes)).collect(),
        models,
    })
}

/// A model's figures; a chunk's stored size is its loose object's, else its pack range's
/// when that pack is listed.
fn model_usage(
    model: String,
    acc: Acc,
    (sizes, packs): (&HashMap<Digest, u64>, &HashSet<Digest>),
) -> ModelUsage {
    let found: Vec<u64> = acc
        .chunks
        .iter()
        .filter_map(|(id, pack)| {
            sizes
                .get(id)
                .copied()
                .or_else(|| pack.filter(|p| packs.contains(&p.id)).map(|p| p.len))
        })
        .collect();
    ModelUsage {
        model,
        versions: acc.versions,
        logical_bytes: acc.logical,
        unique_chunks: acc.chunks.len() as u64,
        stored_bytes: found.iter().sum(),
        missing_chunks: (acc.chunks.len() - found.len()) as u64,
    }
}

fn cost(p: &Price, billed_bytes: u64) -> CostEstimate {
    CostEstimate {
        provider: p.provider.to_string(),
        tier: p.tier.to_string(),
        usd_per_gb_month: p.usd_per_gb_month,
        usd_per_month: billed_bytes as f64 / 1e9 * p.usd_per_gb_month,
    }
}

/// The cost alert of `usage.alert_monthly_cost`: the estimate compared and whether it is
/// above the threshold (`mvault usage` then exits 6; `mvault serve` shows it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostAlert {
    /// USD per month.
    pub threshold_usd_per_month: f64,
    /// The price table entry compared: the vault's own provider, else (a local vault) the
    /// most expensive one.
    pub provider: String,
    pub usd_per_month: f64,
    /// `usd_per_month > threshold_usd_per_month`.
    pub exceeded: bool,
}

impl UsageReport {
    /// Compares the estimate for `scheme` (`s3`, `gs`, `az`, `oss`; any other: the highest
    /// estimate) with `threshold_usd` per month; `None` without any estimate.
    pub fn cost_alert(&self, scheme: &str, threshold_usd: f64) -> Option<CostAlert> {
        let own = self.monthly_cost.iter().find(|c| c.provider == scheme);
        let highest = || {
            self.monthly_cost
                .iter()
                .max_by(|a, b| a.usd_per_month.total_cmp(&b.usd_per_month))
        };
        let c = own.or_else(highest)?;
        Some(CostAlert {
            threshold_usd_per_month: threshold_usd,
            provider: c.provider.clone(),
            usd_per_month: c.usd_per_month,
            exceeded: c.usd_per_month > threshold_usd,
        })
    }
}

#[cfg(test)]
mod alert_tests {
    use super::*;

    #[test]
    fn alert_compares_own_provider_else_highest() {
        let billed = 1_000_000_000_000; // 1000 GB
        let report = UsageReport {
            models: vec![],
            versions: 0,
            logical_bytes: 0,
            stored_bytes: billed,
            chunk_objects: 0,
            pack_objects: 0,
            metadata_objects: 0,
            metadata_bytes: 0,
            objects: 0,
            billed_bytes: billed,
            dedupe_ratio: None,
            monthly_cost: PRICES.iter().map(|p| cost(p, billed)).collect(),
        };
        let az = report.cost_alert("az", 20.0).unwrap();
        assert_eq!(az.provider, "az");
        assert!((az.usd_per_month - 18.0).abs() < 1e-9);
        assert!(!az.exceeded);
        let local = report.cost_alert("file", 20.0).unwrap();
        assert_eq!(local.provider, "s3", "the most expensive");
        assert!(local.exceeded, "23 > 20");
        let empty = UsageReport {
            monthly_cost: vec![],
            ..report
        };
        assert!(empty.cost_alert("s3", 1.0).is_none());
    }
}

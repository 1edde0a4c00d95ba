//! `/metrics`: the audit log's counters (as `mvault stats --metrics-file` writes them) and the
//! vault's storage gauges, in one Prometheus text exposition encoded by `prometheus-client`.
//!
//! Vault gauges, each labelled `remote` (the display name): `mvault_vault_models`,
//! `mvault_vault_versions`, `mvault_vault_logical_bytes`, `mvault_vault_stored_bytes`,
//! `mvault_vault_billed_bytes`, `mvault_vault_objects`, `mvault_vault_dedupe_ratio` (only when
//! something is stored), `mvault_vault_monthly_cost_usd{provider}`, and with a configured
//! alert `mvault_vault_alert_monthly_cost_usd` and `mvault_vault_cost_alert` (1 above it).

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::data::{StorageView, TransfersView};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RemoteLabels {
    remote: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CostLabels {
    remote: String,
    provider: String,
}

#[derive(Debug)]
struct VaultGauges(StorageView);

impl Collector for VaultGauges {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let v = &self.0;
        let u = &v.usage;
        let l = RemoteLabels {
            remote: v.remote.clone(),
        };
        let mut gauges: Vec<(&str, &str, f64)> = vec![
            (
                "mvault_vault_models",
                "Models in the vault.",
                u.models.len() as f64,
            ),
            (
                "mvault_vault_versions",
                "Versions in the vault.",
                u.versions as f64,
            ),
            (
                "mvault_vault_logical_bytes",
                "Bytes pushed (sum of the versions' sizes).",
                u.logical_bytes as f64,
            ),
            (
                "mvault_vault_stored_bytes",
                "Bytes of the chunk objects as stored.",
                u.stored_bytes as f64,
            ),
            (
                "mvault_vault_billed_bytes",
                "Stored bytes plus metadata objects.",
                u.billed_bytes as f64,
            ),
            (
                "mvault_vault_objects",
                "Objects in the vault.",
                u.objects as f64,
            ),
        ];
        if let Some(r) = u.dedupe_ratio {
            gauges.push((
                "mvault_vault_dedupe_ratio",
                "Logical bytes over stored bytes.",
                r,
            ));
        }
        if let Some(a) = &v.alert {
            gauges.push((
                "mvault_vault_alert_monthly_cost_usd",
                "The cost alert threshold (usage.alert_monthly_cost), USD per month.",
                a.threshold_usd_per_month,
            ));
            gauges.push((
                "mvault_vault_cost_alert",
                "1 when the estimated monthly cost is above the threshold.",
                if a.exceeded { 1.0 } else { 0.0 },
            ));
        }
        for (name, help, value) in gauges {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(m.encode_family(&l)?)?;
        }
        let help = "Estimated monthly storage cost at each provider's list price, USD.";
        let mut m = e.encode_descriptor(
            "mvault_vault_monthly_cost_usd",
            help,
            None,
            MetricType::Gauge,
        )?;
        for c in &u.monthly_cost {
            let l = CostLabels {
                remote: v.remote.clone(),
                provider: c.provider.clone(),
            };
            ConstGauge::new(c.usd_per_month).encode(m.encode_family(&l)?)?;
        }
        Ok(())
    }
}

/// The exposition for `/metrics`.
pub fn render(storage: &StorageView, transfers: &TransfersView) -> String {
    let mut registry = Registry::default();
    crate::audit::register(&mut registry, &transfers.operations);
    registry.register_collector(Box::new(VaultGauges(storage.clone())));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

//! Figures over audit records ([`summarize`]) and their Prometheus text form.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use super::Record;

/// Figures for one (command, remote) pair.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct OpStats {
    pub command: String,
    pub remote: String,
    pub count: u64,
    pub ok: u64,
    pub errors: u64,
    /// ok / count, in 0..=1.
    pub success_rate: f64,
    /// errors / count, in 0..=1.
    pub error_rate: f64,
    /// Over the records (ok or not) with bytes > 0 and duration > 0; None without any.
    pub median_mb_per_s: Option<f64>,
    /// Nearest-rank 95th percentile over the same records.
    pub p95_mb_per_s: Option<f64>,
    /// How many records the throughput figures are computed from.
    pub throughput_samples: u64,
    /// Bytes moved, over all records.
    pub bytes: u64,
}

/// Groups records by (command, remote); sorted by command, then remote.
pub fn summarize(records: &[Record]) -> Vec<OpStats> {
    #[derive(Default)]
    struct Acc {
        count: u64,
        ok: u64,
        bytes: u64,
        rates: Vec<f64>,
    }
    let mut groups: BTreeMap<(&str, &str), Acc> = BTreeMap::new();
    for r in records {
        let a = groups
            .entry((r.command.as_str(), r.remote.as_str()))
            .or_default();
        a.count += 1;
        if r.is_ok() {
            a.ok += 1;
        }
        a.bytes = a.bytes.saturating_add(r.bytes);
        if r.bytes > 0 && r.duration_ms > 0 {
            let rate = if r.mb_per_s.is_finite() && r.mb_per_s > 0.0 {
                r.mb_per_s
            } else {
                r.bytes as f64 / 1e6 / (r.duration_ms as f64 / 1000.0)
            };
            a.rates.push(rate);
        }
    }
    groups
        .into_iter()
        .map(|((command, remote), mut a)| {
            a.rates.sort_by(f64::total_cmp);
            let errors = a.count - a.ok;
            OpStats {
                command: command.to_string(),
                remote: remote.to_string(),
                count: a.count,
                ok: a.ok,
                errors,
                success_rate: a.ok as f64 / a.count as f64,
                error_rate: errors as f64 / a.count as f64,
                median_mb_per_s: median(&a.rates),
                p95_mb_per_s: nearest_rank(&a.rates, 95.0),
                throughput_samples: a.rates.len() as u64,
                bytes: a.bytes,
            }
        })
        .collect()
}

/// Median of sorted values (mean of the two middle ones for an even count).
pub(crate) fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// Nearest-rank percentile of sorted values: the value at rank ⌈p/100 · n⌉ (1-based).
fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    command: String,
    remote: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    command: String,
    remote: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabels {
    command: String,
    remote: String,
    quantile: &'static str,
}

/// The stats in the Prometheus text exposition format (version 0.0.4), encoded by
/// `prometheus-client`: `mvault_operations_total{command,remote,result}`,
/// `mvault_bytes_total{command,remote}`,
/// `mvault_throughput_mb_per_s{command,remote,quantile="0.5"|"0.95"}` (only where there are
/// samples). Samples follow `stats` order; label values are escaped by the encoder; floats
/// are written as `dtoa` does (`2.0`).
pub fn prometheus(stats: &[OpStats]) -> String {
    let mut registry = Registry::default();
    register(&mut registry, stats);
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// Adds the metrics of [`prometheus`] to `registry` (for an exposition with more metrics, as
/// `mvault serve`'s `/metrics`).
pub fn register(registry: &mut Registry, stats: &[OpStats]) {
    registry.register_collector(Box::new(Metrics(stats.to_vec())));
}

/// The stats as a collector, so samples come out in their order (a metric `Family` is a hash
/// map, whose order changes from run to run).
#[derive(Debug)]
struct Metrics(Vec<OpStats>);

impl Collector for Metrics {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let op = |s: &OpStats| (s.command.clone(), s.remote.clone());
        let help = "Operations recorded in the audit log.";
        let mut m = e.encode_descriptor("mvault_operations", help, None, MetricType::Counter)?;
        for s in &self.0 {
            for (result, n) in [("ok", s.ok), ("error", s.errors)] {
                let (command, remote) = op(s);
                let l = ResultLabels {
                    command,
                    remote,
                    result,
                };
                ConstCounter::new(n).encode(m.encode_family(&l)?)?;
            }
        }
        let help = "Bytes moved by recorded operations.";
        let mut m = e.encode_descriptor("mvault_bytes", help, None, MetricType::Counter)?;
        for s in &self.0 {
            let (command, remote) = op(s);
            ConstCounter::new(s.bytes).encode(m.encode_family(&OpLabels { command, remote })?)?;
        }
        let help = "Throughput of recorded operations in MB (10^6 bytes) per second.";
        let name = "mvault_throughput_mb_per_s";
        let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for s in &self.0 {
            for (quantile, v) in [("0.5", s.median_mb_per_s), ("0.95", s.p95_mb_per_s)] {
                if let Some(v) = v {
                    let (command, remote) = op(s);
                    let l = QuantileLabels {
                        command,
                        remote,
                        quantile,
                    };
                    ConstGauge::new(v).encode(m.encode_family(&l)?)?;
                }
            }
        }
        Ok(())
    }
}

/// Writes [`prometheus`] output to `path` atomically (a temporary file in the same directory,
/// flushed, then renamed over `path`), e.g. for node_exporter's textfile collector.
pub fn write_metrics_file(path: &Path, stats: &[OpStats]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    // Readable by a metrics collector running as another user (0666 less umask), and
    // replaced atomically so it never reads a partial file.
    let mut tmp = tempfile::Builder::new()
        .prefix(".mvault-metrics-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(&dir)?;
    tmp.write_all(prometheus(stats).as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map(drop).map_err(|e| e.error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::rec;

    #[test]
    fn summarize_rates_and_percentiles() {
        let mut records = Vec::new();
        // push to A: 20 runs, 1..=20 MB in 1 s each → 1..=20 MB/s; runs 3, 6, 9, 12 fail.
        for i in 1..=20u64 {
            records.push(rec(
                "push",
                "s3://a",
                i % 3 != 0 || i > 12,
                i * 1_000_000,
                1000,
            ));
        }
        // pull from A: 4 runs, one failing with no bytes (excluded from throughput).
        records.push(rec("pull", "s3://a", true, 2_000_000, 1000));
        records.push(rec("pull", "s3://a", true, 8_000_000, 1000));
        records.push(rec("pull", "s3://a", true, 4_000_000, 1000));
        records.push(rec("pull", "s3://a", false, 0, 5));
        // gc: no bytes at all.
        records.push(rec("gc", "prod", true, 0, 30));

        let s = summarize(&records);
        let keys: Vec<_> = s.iter().map(|s| (&*s.command, &*s.remote)).collect();
        assert_eq!(
            keys,
            [("gc", "prod"), ("pull", "s3://a"), ("push", "s3://a")]
        );

        let gc = &s[0];
        assert_eq!((gc.count, gc.ok, gc.errors), (1, 1, 0));
        assert_eq!(gc.median_mb_per_s, None);
        assert_eq!(gc.p95_mb_per_s, None);
        assert_eq!(gc.throughput_samples, 0);

        let pull = &s[1];
        assert_eq!((pull.count, pull.ok, pull.errors), (4, 3, 1));
        assert_eq!(pull.success_rate, 0.75);
        assert_eq!(pull.error_rate, 0.25);
        assert_eq!(pull.median_mb_per_s, Some(4.0));
        assert_eq!(pull.p95_mb_per_s, Some(8.0));
        assert_eq!(pull.throughput_samples, 3);
        assert_eq!(pull.bytes, 14_000_000);

        let push = &s[2];
        assert_eq!((push.count, push.ok, push.errors), (20, 16, 4));
        assert_eq!(push.success_rate, 0.8);
        assert!((push.error_rate - 0.2).abs() < 1e-12);
        assert_eq!(push.median_mb_per_s, Some(10.5));
        // Nearest rank: ⌈0.95 · 20⌉ = 19th value.
        assert_eq!(push.p95_mb_per_s, Some(19.0));
        assert_eq!(push.bytes, 210_000_000);

        assert_eq!(nearest_rank(&[1.0], 95.0), Some(1.0));
        assert_eq!(nearest_rank(&[1.0, 2.0, 3.0, 4.0, 5.0], 95.0), Some(5.0));
        assert_eq!(median(&[1.0, 2.0, 3.0]), Some(2.0));
        assert!(summarize(&[]).is_empty());
    }

    #[test]
    fn prometheus_output() {
        let records = vec![
            rec("push", "s3://b/p", true, 3_000_000, 1000),
            rec("push", "s3://b/p", true, 1_000_000, 1000),
            rec("push", "s3://b/p", false, 0, 10),
            rec("pull", "we\"ird\\name\nx", true, 0, 10),
        ];
        let text = prometheus(&summarize(&records));
        for want in [
            "# TYPE mvault_operations_total counter",
            "mvault_operations_total{command=\"push\",remote=\"s3://b/p\",result=\"ok\"} 2",
            "mvault_operations_total{command=\"push\",remote=\"s3://b/p\",result=\"error\"} 1",
            "mvault_bytes_total{command=\"push\",remote=\"s3://b/p\"} 4000000",
            "mvault_throughput_mb_per_s{command=\"push\",remote=\"s3://b/p\",quantile=\"0.5\"} 2.0",
            "mvault_throughput_mb_per_s{command=\"push\",remote=\"s3://b/p\",quantile=\"0.95\"} 3.0",
            "mvault_operations_total{command=\"pull\",remote=\"we\\\"ird\\\\name\\nx\",result=\"ok\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == want),
                "missing {want:?} in\n{text}"
            );
        }
        assert!(!text.contains("quantile=\"0.5\"} NaN"));
        assert!(
            !text.contains("command=\"pull\",remote=\"we\\\"ird\\\\name\\nx\",quantile"),
            "no throughput line without samples"
        );
        // Every sample line is name{labels} value.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = l.rsplit_once("} ").unwrap();
            value.parse::<f64>().unwrap();
        }

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics/mvault.prom");
        write_metrics_file(&path, &summarize(&records)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        write_metrics_file(&path, &[]).unwrap();
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary files left");
    }
}

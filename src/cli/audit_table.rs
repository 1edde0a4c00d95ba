//! `mvault stats` presentation: the text table of [`crate::audit::OpStats`] and `--since`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

/// A plain-text table of the stats for humans.
pub(crate) fn table(stats: &[crate::audit::OpStats]) -> String {
    let rate = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    let rows: Vec<[String; 8]> = stats
        .iter()
        .map(|s| {
            [
                s.command.clone(),
                s.remote.clone(),
                s.count.to_string(),
                format!("{:.1}%", s.success_rate * 100.0),
                format!("{:.1}%", s.error_rate * 100.0),
                rate(s.median_mb_per_s),
                rate(s.p95_mb_per_s),
                crate::util::human_bytes(s.bytes),
            ]
        })
        .collect();
    let header = [
        "COMMAND",
        "REMOTE",
        "COUNT",
        "OK",
        "ERRORS",
        "MEDIAN MB/s",
        "P95 MB/s",
        "BYTES",
    ];
    let mut widths: [usize; 8] = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            // Text columns left-aligned, numbers right-aligned.
            if i < 2 {
                let _ = write!(l, "{c:<w$}  ");
            } else {
                let _ = write!(l, "{c:>w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

/// Parses `--since`: a duration back from now (`30m`, `24h`, `7d`, `2w`), an RFC 3339 time,
/// or a date `YYYY-MM-DD` (midnight UTC).
pub(crate) fn parse_since(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if let Some(secs) = crate::util::parse_duration_secs(s) {
        return SystemTime::now().checked_sub(Duration::from_secs(secs));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc).into());
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_pair() {
        let s = crate::audit::summarize(&[crate::audit::rec(
            "push", "s3://b/p", true, 1_500_000, 1000,
        )]);
        let t = table(&s);
        assert!(t.starts_with("COMMAND"));
        assert!(t.contains("s3://b/p") && t.contains("100.0%") && t.contains("1.5"));
    }
    #[test]
    fn since_forms() {
        let week = SystemTime::now() - Duration::from_secs(7 * 86_400);
        let t = parse_since("7d").unwrap();
        assert!(t <= SystemTime::now() && t >= week - Duration::from_secs(60));
        assert!(parse_since("2024-01-01").is_some());
        assert!(parse_since("2024-01-01T10:00:00+02:00").is_some());
        assert!(parse_since("yesterday").is_none());
    }
}

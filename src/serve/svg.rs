//! Charts as inline SVG (no script): a line chart of values over an ordered axis (a metric
//! across versions, a rate over time) and horizontal bars (bytes per model). Every text is
//! escaped; each point carries a `<title>` so a browser shows its value on hover.

use std::fmt::Write;

use super::html::esc;

const W: f64 = 500.0;
const H: f64 = 200.0;
/// Left, right, top, bottom margins, px.
const ML: f64 = 64.0;
const MR: f64 = 16.0;
const MT: f64 = 16.0;
const MB: f64 = 36.0;

/// A line chart of `points` (label, value) in axis order; `None` values leave a gap.
/// `fmt` formats values on the axis and in the tooltips. Empty when no point has a value.
pub fn line_chart(
    title: &str,
    points: &[(String, Option<f64>)],
    fmt: &dyn Fn(f64) -> String,
) -> String {
    let values: Vec<f64> = points.iter().filter_map(|(_, v)| *v).collect();
    if values.is_empty() {
        return String::new();
    }
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    if hi - lo < 1e-12 {
        let pad = if lo.abs() > 1e-12 {
            lo.abs() * 0.05
        } else {
            1.0
        };
        (lo, hi) = (lo - pad, hi + pad);
    }
    let n = points.len();
    let x = |i: usize| {
        if n == 1 {
            ML + (W - ML - MR) / 2.0
        } else {
            ML + (W - ML - MR) * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| MT + (H - MT - MB) * (1.0 - (v - lo) / (hi - lo));
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        t = esc(title)
    );
    // Axes and gridlines at min, middle, max.
    for (i, v) in [hi, (lo + hi) / 2.0, lo].into_iter().enumerate() {
        let yy = y(v);
        let dash = if i == 2 {
            ""
        } else {
            r#" stroke-dasharray="3 3""#
        };
        let _ = write!(
            s,
            r##"<line x1="{ML}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#d0d7de"{dash}/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11" fill="#57606a">{}</text>"##,
            W - MR,
            ML - 6.0,
            yy + 4.0,
            esc(&fmt(v))
        );
    }
    // First and last labels on the x axis (a middle one when there are many).
    let mut ticks = vec![0, n - 1];
    if n > 4 {
        ticks.insert(1, n / 2);
    }
    ticks.dedup();
    for i in ticks {
        let anchor = match i {
            0 if n > 1 => "start",
            i if i == n - 1 && n > 1 => "end",
            _ => "middle",
        };
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}" font-size="11" fill="#57606a">{}</text>"##,
            x(i),
            H - MB + 18.0,
            esc(&points[i].0)
        );
    }
    // The line, broken where values are missing.
    let mut run: Vec<String> = Vec::new();
    let flush = |run: &mut Vec<String>, s: &mut String| {
        if run.len() > 1 {
            let _ = write!(
                s,
                r##"<polyline fill="none" stroke="#0969da" stroke-width="2" points="{}"/>"##,
                run.join(" ")
            );
        }
        run.clear();
    };
    for (i, (_, v)) in points.iter().enumerate() {
        match v {
            Some(v) => run.push(format!("{:.1},{:.1}", x(i), y(*v))),
            None => flush(&mut run, &mut s),
        }
    }
    flush(&mut run, &mut s);
    let r = if n > 100 { 1.5 } else { 3.0 };
    for (i, (label, v)) in points.iter().enumerate() {
        if let Some(v) = v {
            let _ = write!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="{r}" fill="#0969da"><title>{}: {}</title></circle>"##,
                x(i),
                y(*v),
                esc(label),
                esc(&fmt(*v))
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars: for each row (label, values), one bar per value in the series' colour,
/// scaled to the largest value of the chart. `series` names and colours the values, for the
/// legend. Empty when there are no rows.
pub fn bar_chart(
    title: &str,
    series: &[(&str, &str)],
    rows: &[(String, Vec<u64>)],
    fmt: &dyn Fn(u64) -> String,
) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let max = rows
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let (label_w, bar_h, gap) = (140.0, 12.0, 10.0);
    let row_h = bar_h * series.len() as f64 + gap;
    let height = 28.0 + row_h * rows.len() as f64;
    let plot_w = W - label_w - 90.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        t = esc(title)
    );
    let mut lx = label_w;
    for (name, colour) in series {
        let _ = write!(
            s,
            r##"<rect x="{lx}" y="4" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="13" font-size="11" fill="#24292f">{}</text>"##,
            lx + 14.0,
            esc(name)
        );
        lx += 14.0 + 8.0 * name.len() as f64 + 16.0;
    }
    for (r, (label, values)) in rows.iter().enumerate() {
        let top = 24.0 + row_h * r as f64;
        let shown: String = label.chars().take(24).collect();
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="12" fill="#24292f">{}<title>{}</title></text>"##,
            label_w - 8.0,
            top + bar_h * series.len() as f64 / 2.0 + 4.0,
            esc(&shown),
            esc(label)
        );
        for (k, (v, (name, colour))) in values.iter().zip(series).enumerate() {
            let w = (*v as f64 / max * plot_w).max(1.0);
            let yy = top + bar_h * k as f64;
            let _ = write!(
                s,
                r##"<rect x="{label_w}" y="{yy:.1}" width="{w:.1}" height="{:.1}" fill="{colour}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}" font-size="11" fill="#57606a">{}</text>"##,
                bar_h - 2.0,
                esc(name),
                esc(&fmt(*v)),
                label_w + w + 4.0,
                yy + bar_h - 3.0,
                esc(&fmt(*v))
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_and_plot() {
        let pts = vec![
            ("1.0.0".to_string(), Some(0.5)),
            ("<b>".to_string(), None),
            ("2.0.0".to_string(), Some(0.9)),
        ];
        let svg = line_chart("acc <x>", &pts, &|v| format!("{v:.2}"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("acc &lt;x&gt;") && !svg.contains("<b>"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(!svg.contains("<polyline"), "a gap between the two values");
        assert!(line_chart("t", &[("a".into(), None)], &|v| v.to_string()).is_empty());
        let one = line_chart("t", &[("a".into(), Some(3.0))], &|v| v.to_string());
        assert!(one.contains("<circle") && !one.contains("NaN"));

        let bars = bar_chart(
            "bytes",
            &[("logical", "#0969da"), ("stored", "#1a7f37")],
            &[("m\"1".into(), vec![100, 50]), ("m2".into(), vec![0, 0])],
            &|v| v.to_string(),
        );
        assert_eq!(bars.matches("<rect").count(), 2 + 4);
        assert!(bars.contains("m&quot;1"));
    }
}

//! The latency distribution as an SVG chart, drawn the way HdrHistogram plots are: latency against percentile on
//! a log axis of 1 / (1 - p), so 90 %, 99 %, 99.9 % and 99.99 % are evenly spaced and the tail is as readable as
//! the median.
//!
//! Hand-written rather than with the `plotters` crate: the chart is one polyline, a few ticks and labels, and the
//! axis it needs (percentile on a log scale of 1 / (1 - p) with percent labels) is not one of plotters' ranged
//! coordinates anyway, so plotters would add a dependency tree to the `courier` binary for a custom axis.

use std::fmt::Write;

use crate::report::Report;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 500.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// The x axis ends at 99.999 %: 10^5 = 1 / (1 - 0.99999).
const X_DECADES: f64 = 5.0;
/// Percentile ticks and their labels.
const TICKS: [(f64, &str); 7] =
    [(0.0, "0%"), (50.0, "50%"), (90.0, "90%"), (99.0, "99%"), (99.9, "99.9%"), (99.99, "99.99%"), (99.999, "99.999%")];
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// An SVG document plotting each report's latency distribution (one curve per report, with a legend).
pub fn svg(reports: &[&Report]) -> String {
    let max_ms = reports.iter().map(|r| r.max_us as f64 / 1000.0).fold(0.0, f64::max);
    let y_top = nice_ceiling(max_ms.max(0.001));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |percentile: f64| LEFT + x_decades(percentile) / X_DECADES * plot_w;
    let y = |ms: f64| TOP + plot_h - ms / y_top * plot_h;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let title = reports.first().map(|r| format!("{} ({})", r.scenario, r.mode)).unwrap_or_default();
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">Latency by percentile: {}</text>"#,
        WIDTH / 2.0,
        escape(&title)
    );
    for (percentile, label) in TICKS {
        let px = x(percentile);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0
        );
    }
    for i in 0..=5 {
        let ms = y_top * f64::from(i) / 5.0;
        let py = y(ms);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0,
            format_ms(ms)
        );
    }
    let _ = writeln!(
        out,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 14.0
    );
    let _ = writeln!(
        out,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">latency (ms)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    for (i, report) in reports.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = report
            .distribution
            .iter()
            .map(|&(percentile, us)| format!("{:.1},{:.1}", x(percentile), y(us as f64 / 1000.0)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let legend = format!(
            "{} {}: {:.0} calls/s, p50 {} ms, p99 {} ms, max {} ms",
            report.scenario,
            report.mode,
            report.throughput,
            format_ms(report.p50_us as f64 / 1000.0),
            format_ms(report.p99_us as f64 / 1000.0),
            format_ms(report.max_us as f64 / 1000.0)
        );
        let ly = TOP + 18.0 + 16.0 * i as f64;
        let _ = writeln!(out, r#"<text x="{:.1}" y="{ly:.1}" fill="{colour}">{}</text>"#, LEFT + 10.0, escape(&legend));
    }
    out.push_str("</svg>\n");
    out
}

/// Where a percentile sits on the x axis, in decades of 1 / (1 - p), capped at the axis end (100 % is infinite).
fn x_decades(percentile: f64) -> f64 {
    let remaining = (1.0 - percentile / 100.0).max(0.0);
    if remaining <= 0.0 {
        return X_DECADES;
    }
    (-remaining.log10()).clamp(0.0, X_DECADES)
}

/// The smallest 1, 2 or 5 times a power of ten at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|&v| v >= value).unwrap_or(10.0 * power)
}

fn format_ms(ms: f64) -> String {
    if ms >= 10.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_spaces_nines_evenly_and_ends_at_five() {
        assert!((x_decades(90.0) - 1.0).abs() < 1e-9);
        assert!((x_decades(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(x_decades(100.0), X_DECADES);
        assert_eq!(x_decades(0.0), 0.0);
    }

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1.3), 2.0);
        assert_eq!(nice_ceiling(31.0), 50.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
    }
}

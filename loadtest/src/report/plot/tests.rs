//! The plot's SVG, read back: legends, title, steady window, axis scale.

use super::*;
use crate::report::{CallSecond, Second};
use crate::scenario::Scenario;

fn pct(p50: f64, p95: f64, p99: f64) -> Percentiles {
    Percentiles {
        count: 100,
        p50_ms: p50,
        p90_ms: p95,
        p95_ms: p95,
        p99_ms: p99,
        max_ms: p99,
    }
}

/// 20 s: 40 listeners in by 4 s, a slow first second, then a steady millisecond or so.
fn report(warm_up_p99: f64) -> Report {
    let timeline = (1..=20)
        .map(|t| Second {
            t: f64::from(t),
            listeners: (t as usize * 10).min(40),
            received: 2000,
            expected: if t == 1 { 4000 } else { 2000 },
            latency: if t == 1 {
                pct(warm_up_p99 / 4.0, warm_up_p99 / 2.0, warm_up_p99)
            } else {
                pct(1.0, 2.0, 4.0)
            },
        })
        .collect();
    Report {
        scenario: Some(Scenario {
            name: Some("tiny".into()),
            listeners: 40,
            ..Scenario::default()
        }),
        started_at: Some("2026-01-02T03:04:05Z".into()),
        steady_from_s: Some(4.0),
        timeline,
        ..Report::default()
    }
}

fn render(r: &Report, name: &str) -> String {
    let path = std::env::temp_dir().join(format!("amphi-swarm-{name}-{}.svg", std::process::id()));
    let png = r.plot(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&png).unwrap();
    text
}

/// The PNG beside the SVG is the same picture: its size, a white page, the series' colours
/// drawn, and, where the machine has a font, the title's text in dark pixels at the top.
#[test]
fn a_png_of_the_same_picture_is_written_beside_the_svg() {
    let path = std::env::temp_dir().join(format!("amphi-swarm-png-{}.svg", std::process::id()));
    let png = report(300.0).plot(&path).unwrap();
    assert_eq!(png, path.with_extension("png"));
    let decoded = resvg::tiny_skia::Pixmap::load_png(&png).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&png).unwrap();
    assert_eq!((decoded.width(), decoded.height()), SIZE);
    let pixels = decoded.pixels();
    let rgb = |p: &resvg::tiny_skia::PremultipliedColorU8| (p.red(), p.green(), p.blue());
    assert_eq!(rgb(&pixels[0]), (255, 255, 255), "a white page");
    for color in [LOW, MID, TAIL] {
        assert!(
            pixels.iter().any(|p| rgb(p) == (color.0, color.1, color.2)),
            "a line in {color:?} is drawn"
        );
    }
    let mut fonts = resvg::usvg::fontdb::Database::new();
    fonts.load_system_fonts();
    let has_font = fonts
        .faces()
        .any(|f| f.families.iter().any(|(n, _)| SANS.contains(&n.as_str())));
    let title_band = &pixels[..SIZE.0 as usize * 30];
    let dark = title_band.iter().filter(|p| p.red() < 100).count();
    assert_eq!(
        dark > 50,
        has_font,
        "title text drawn: {dark} dark pixels; font found: {has_font}"
    );
}

/// The x of the SVG text element reading `label`.
fn text_x(svg: &str, label: &str) -> i32 {
    let at = svg
        .find(&format!(">\n{label}\n</text>"))
        .unwrap_or_else(|| panic!("no text {label:?}"));
    let open = svg[..at].rfind("<text x=\"").unwrap() + "<text x=\"".len();
    let end = open + svg[open..].find('"').unwrap();
    svg[open..end].parse().unwrap()
}

#[test]
fn every_series_is_labelled_in_a_legend_right_of_the_data() {
    let svg = render(&report(300.0), "legend");
    let column = (SIZE.0 - LEGEND_WIDTH) as i32;
    for label in [
        "p50, ms",
        "p95, ms",
        "p99, ms",
        "delivery, % (left axis)",
        "listeners in (right axis)",
        "steady window",
    ] {
        assert!(text_x(&svg, label) > column, "{label} over the data");
    }
    assert!(
        svg.contains("tiny: 1 channel × 1 host × 40 listeners per channel — 2026-01-02 03:04 UTC")
    );
}

#[test]
fn the_steady_window_is_shaded_from_where_every_listener_heard() {
    let svg = render(&report(300.0), "steady");
    assert!(svg.contains("steady window, from 4 s:"));
    assert!(svg.contains(&format!("fill=\"{}\"", hex(STEADY))));
    let unsteady = Report {
        steady_from_s: None,
        ..report(300.0)
    };
    let svg = render(&unsteady, "unsteady");
    assert!(!svg.contains("steady window"));
    assert!(!svg.contains(&format!("fill=\"{}\"", hex(STEADY))));
}

fn hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

#[test]
fn latency_over_one_and_a_half_decades_is_on_a_log_axis() {
    // 1 ms medians to a 300 ms warm-up tail: 2.5 decades.
    let svg = render(&report(300.0), "log");
    assert!(svg.contains("ms (log scale)"));
    for tick in ["1", "2", "5", "10", "100", "200"] {
        text_x(&svg, tick);
    }
    // 1 to 12 ms: about one decade, read better on a linear axis.
    let svg = render(&report(12.0), "linear");
    assert!(!svg.contains("log scale"));
}

#[test]
fn log_ticks_are_one_two_and_five_in_each_decade() {
    assert_eq!(log_ticks(&(0.7..60.0)), [1.0, 2.0, 5.0, 10.0, 20.0, 50.0]);
    assert_eq!(log_ticks(&(0.15..0.6)), [0.2, 0.5]);
}

#[test]
fn a_calls_plot_labels_ok_and_failed_calls() {
    let r = Report {
        scenario: Some(Scenario {
            kind: crate::Kind::Calls,
            ..Scenario::default()
        }),
        calls: Some(crate::report::CallsReport {
            timeline: (1..=5)
                .map(|t| CallSecond {
                    t: f64::from(t),
                    ok: 10,
                    failed: u64::from(t == 3),
                    setup: pct(40.0, 50.0, 60.0),
                })
                .collect(),
            ..Default::default()
        }),
        ..Report::default()
    };
    let svg = render(&r, "calls");
    for label in ["p50, ms", "p90, ms", "p99, ms", "ok", "failed"] {
        assert!(
            text_x(&svg, label) > (SIZE.0 - LEGEND_WIDTH) as i32,
            "{label}"
        );
    }
    assert!(svg.contains("calls: 300 calls, 8 pairs at once"));
}

//! The report as an SVG picture: a title naming the run and its date; above, latency (calls:
//! setup) percentiles per second; below, delivery and listeners (calls: calls ended) per
//! second. Each chart keeps its legend in a column right of the data, so no line hides behind
//! it, and the steady window is shaded on both charts.
//!
//! A PNG of the same picture is written beside the SVG (for pages and chats that show no SVG),
//! rasterised from it with the system's fonts; a machine with no font gets a PNG without
//! text, and a warning naming the package that brings one.

use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{CallsReport, Percentiles, Report};

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Pick = fn(&Percentiles) -> f64;
/// A percentile's name, colour and field.
type Series = (&'static str, RGBColor, Pick);

const SIZE: (u32, u32) = (1100, 660);
const LEGEND_WIDTH: u32 = 230;
/// Past this many decades between the lowest median and the highest tail, the latency axis
/// is logarithmic: a warm-up second at hundreds of milliseconds would otherwise flatten a
/// steady few into the floor.
const LOG_AXIS_DECADES: f64 = 1.5;
const X_DESC: &str = "seconds into the run";
const LABELS: (&str, u32) = ("sans-serif", 14);

const LOW: RGBColor = RGBColor(31, 119, 180);
const MID: RGBColor = RGBColor(44, 160, 44);
const TAIL: RGBColor = RGBColor(214, 39, 40);
const COUNT: RGBColor = RGBColor(70, 70, 70);
const STEADY: RGBColor = RGBColor(255, 190, 60);

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// One legend line: a coloured line or the steady window's shade, and its text (`\n` breaks).
enum Key {
    Line(RGBColor),
    Band,
}

struct Entry {
    key: Key,
    label: String,
}

fn line(label: &str, color: RGBColor) -> Entry {
    Entry {
        key: Key::Line(color),
        label: label.to_string(),
    }
}

/// Writes the SVG at `path` and the PNG beside it; answers the PNG's path.
pub(super) fn plot(r: &Report, path: &Path) -> Result<PathBuf, String> {
    svg(r, path)?;
    let png = path.with_extension("png");
    rasterise(path, &png)?;
    Ok(png)
}

/// Fonts a Debian or Ubuntu machine has for the SVG's `sans-serif`, in order of preference.
const SANS: &[&str] = &[
    "DejaVu Sans",
    "Liberation Sans",
    "Noto Sans",
    "FreeSans",
    "Arial",
];

fn rasterise(svg: &Path, png: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(svg).map_err(err)?;
    let mut options = resvg::usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_system_fonts();
    let family = SANS.iter().find(|name| {
        fonts
            .faces()
            .any(|f| f.families.iter().any(|(n, _)| n == *name))
    });
    match family {
        Some(name) => fonts.set_sans_serif_family(*name),
        None => eprintln!(
            "amphi-swarm: no sans-serif font found ({}): the PNG has no text; \
             install fonts-dejavu-core",
            SANS.join(", ")
        ),
    }
    let tree = resvg::usvg::Tree::from_str(&text, &options).map_err(err)?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        resvg::tiny_skia::Pixmap::new(size.width(), size.height()).ok_or("the plot has no area")?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap.save_png(png).map_err(err)
}

fn svg(r: &Report, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let area = root.titled(&title(r), ("sans-serif", 20)).map_err(err)?;
    let (top, bottom) = area.split_vertically(area.dim_in_pixel().1 * 55 / 100);
    match &r.calls {
        Some(c) => calls(c, &top, &bottom)?,
        None => listeners(r, &top, &bottom)?,
    }
    root.present().map_err(err)
}

/// The scenario's name (or what it did) and when it started, to the minute.
fn title(r: &Report) -> String {
    let mut t = r
        .scenario
        .as_ref()
        .map_or_else(|| "amphi-swarm".to_string(), |s| s.label());
    if let Some(at) = &r.started_at {
        let minute: String = at.chars().take(16).collect();
        t += &format!(" — {} UTC", minute.replace('T', " "));
    }
    if r.interrupted {
        t += " (interrupted)";
    }
    t
}

fn listeners(r: &Report, top: &Area, bottom: &Area) -> Result<(), String> {
    let t_max = r.timeline.last().map_or(1.0, |s| s.t.max(1.0));
    let steady = r.steady_from_s.filter(|&t| t < t_max).map(|t| t..t_max);
    let points: Vec<(f64, &Percentiles)> = r
        .timeline
        .iter()
        .filter(|s| s.latency.count > 0)
        .map(|s| (s.t, &s.latency))
        .collect();
    let series: [Series; 3] = [
        ("p50", LOW, |p| p.p50_ms),
        ("p95", MID, |p| p.p95_ms),
        ("p99", TAIL, |p| p.p99_ms),
    ];
    let mut keys = percentile_chart(
        top,
        "End-to-end latency per second (capture to receipt)",
        t_max,
        &points,
        &series,
        steady.as_ref(),
    )?;
    if let Some(s) = &steady {
        keys.push(Entry {
            key: Key::Band,
            label: format!(
                "steady window, from {:.0} s:\nevery listener hearing;\nthe cost figures cover it",
                s.start
            ),
        });
    }
    legend(top, &keys)?;
    delivery_chart(r, bottom, t_max, steady.as_ref())
}

fn calls(c: &CallsReport, top: &Area, bottom: &Area) -> Result<(), String> {
    let t_max = c.timeline.last().map_or(1.0, |s| s.t.max(1.0));
    let points: Vec<(f64, &Percentiles)> = c
        .timeline
        .iter()
        .filter(|s| s.setup.count > 0)
        .map(|s| (s.t, &s.setup))
        .collect();
    let series: [Series; 3] = [
        ("p50", LOW, |p| p.p50_ms),
        ("p90", MID, |p| p.p90_ms),
        ("p99", TAIL, |p| p.p99_ms),
    ];
    let keys = percentile_chart(
        top,
        "Call setup per second: request to first audio both ways",
        t_max,
        &points,
        &series,
        None,
    )?;
    legend(top, &keys)?;
    let (plot_area, _) = columns(bottom);
    let n_max = c
        .timeline
        .iter()
        .map(|s| s.ok.max(s.failed))
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.1;
    let mut chart = builder(&plot_area, "Calls ended per second", false)
        .build_cartesian_2d(0.0..t_max, 0.0..n_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .label_style(LABELS)
        .axis_desc_style(LABELS)
        .x_desc(X_DESC)
        .y_desc("calls")
        .draw()
        .map_err(err)?;
    let ok: fn(&super::CallSecond) -> u64 = |s| s.ok;
    let failed: fn(&super::CallSecond) -> u64 = |s| s.failed;
    for (pick, color) in [(ok, LOW), (failed, TAIL)] {
        chart
            .draw_series(LineSeries::new(
                c.timeline.iter().map(|s| (s.t, pick(s) as f64)),
                color.stroke_width(2),
            ))
            .map_err(err)?;
    }
    legend(bottom, &[line("ok", LOW), line("failed", TAIL)])
}

/// The chart's area and, right of it, the legend's column.
fn columns<'a>(area: &Area<'a>) -> (Area<'a>, Area<'a>) {
    area.split_horizontally(area.dim_in_pixel().0.saturating_sub(LEGEND_WIDTH))
}

/// A chart with a caption and axis room; one without a right axis keeps that room blank, so
/// the time axes of the charts above one another line up.
fn builder<'a, 'b>(
    area: &'a Area<'b>,
    caption: &str,
    right_axis: bool,
) -> ChartBuilder<'a, 'static, SVGBackend<'b>> {
    const AXIS: u32 = 60;
    let mut b = ChartBuilder::on(area);
    b.caption(caption, ("sans-serif", 17))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(AXIS);
    if right_axis {
        b.right_y_label_area_size(AXIS);
    } else {
        b.margin_right(10 + AXIS);
    }
    b
}

/// Three percentiles over time, on a log axis when they span more than
/// [`LOG_AXIS_DECADES`]; returns their legend entries.
fn percentile_chart(
    area: &Area,
    caption: &str,
    t_max: f64,
    points: &[(f64, &Percentiles)],
    series: &[Series; 3],
    steady: Option<&Range<f64>>,
) -> Result<Vec<Entry>, String> {
    let (plot_area, _) = columns(area);
    let lo = points
        .iter()
        .map(|(_, p)| series[0].2(p))
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let hi = points
        .iter()
        .map(|(_, p)| series[2].2(p))
        .fold(0.0, f64::max);
    let mut b = builder(&plot_area, caption, false);
    if lo.is_finite() && hi > 0.0 && (hi / lo).log10() > LOG_AXIS_DECADES {
        let y = lo / 1.3..hi * 1.3;
        let ticks = log_ticks(&y);
        let chart = b
            .build_cartesian_2d(0.0..t_max, y.log_scale().with_key_points(ticks))
            .map_err(err)?;
        draw_percentiles(chart, "ms (log scale)", points, series, steady)?;
    } else {
        let chart = b
            .build_cartesian_2d(0.0..t_max, 0.0..(hi * 1.1).max(1.0))
            .map_err(err)?;
        draw_percentiles(chart, "ms", points, series, steady)?;
    }
    Ok(series
        .iter()
        .map(|(name, color, _)| line(&format!("{name}, ms"), *color))
        .collect())
}

/// 1, 2 and 5 times each power of ten in `range`: plotters labels a log axis only at whole
/// decades, too few to read a value off a curve between them.
fn log_ticks(range: &Range<f64>) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(range.start.log10().floor());
    while decade <= range.end {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if range.contains(&v) {
                ticks.push(v);
            }
        }
        decade *= 10.0;
    }
    ticks
}

fn draw_percentiles<Y>(
    mut chart: ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    y_desc: &str,
    points: &[(f64, &Percentiles)],
    series: &[Series; 3],
    steady: Option<&Range<f64>>,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .label_style(LABELS)
        .axis_desc_style(LABELS)
        .x_desc(X_DESC)
        .y_desc(y_desc)
        .y_label_formatter(&|v| format!("{v}"))
        .draw()
        .map_err(err)?;
    let floor = chart.y_range().start;
    shade(&mut chart, steady)?;
    for (_, color, pick) in series {
        chart
            .draw_series(LineSeries::new(
                // A log axis has no zero: a sub-axis value sits on the floor.
                points.iter().map(|(t, p)| (*t, pick(p).max(floor))),
                color.stroke_width(2),
            ))
            .map_err(err)?;
    }
    Ok(())
}

/// The steady window across the chart's full height.
fn shade<Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    steady: Option<&Range<f64>>,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64>,
{
    let Some(s) = steady else {
        return Ok(());
    };
    let y = chart.y_range();
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(s.start, y.start), (s.end, y.end)],
            STEADY.mix(0.22).filled(),
        )))
        .map_err(err)?;
    Ok(())
}

/// Delivery (received over expected, %) on the left axis, listeners in on the right.
fn delivery_chart(
    r: &Report,
    area: &Area,
    t_max: f64,
    steady: Option<&Range<f64>>,
) -> Result<(), String> {
    let (plot_area, _) = columns(area);
    let delivery: Vec<(f64, f64)> = r
        .timeline
        .iter()
        .filter(|s| s.expected > 0)
        .map(|s| {
            let pct = s.received as f64 / s.expected as f64 * 100.0;
            (s.t, pct.min(100.0))
        })
        .collect();
    let low = delivery.iter().map(|d| d.1).fold(100.0, f64::min);
    // Whole tens below the lowest second: 99.2 % is not drawn as the top of a 0–100 axis.
    let floor = ((low - 1.0) / 10.0).floor().max(0.0) * 10.0;
    let n_max = r
        .timeline
        .iter()
        .map(|s| s.listeners)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut chart = builder(&plot_area, "Delivery and listeners per second", true)
        .build_cartesian_2d(0.0..t_max, floor..100.5)
        .map_err(err)?
        .set_secondary_coord(0.0..t_max, 0.0..n_max * 1.1);
    chart
        .configure_mesh()
        .label_style(LABELS)
        .axis_desc_style(LABELS)
        .x_desc(X_DESC)
        .y_desc("delivery, %")
        .draw()
        .map_err(err)?;
    chart
        .configure_secondary_axes()
        .label_style(LABELS)
        .axis_desc_style(LABELS)
        .y_desc("listeners")
        .draw()
        .map_err(err)?;
    if let Some(s) = steady {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(s.start, floor), (s.end, 100.5)],
                STEADY.mix(0.22).filled(),
            )))
            .map_err(err)?;
    }
    chart
        .draw_series(LineSeries::new(delivery, LOW.stroke_width(2)))
        .map_err(err)?;
    chart
        .draw_secondary_series(LineSeries::new(
            r.timeline.iter().map(|s| (s.t, s.listeners as f64)),
            COUNT.stroke_width(2),
        ))
        .map_err(err)?;
    let mut keys = vec![
        line("delivery, % (left axis)", LOW),
        line("listeners in (right axis)", COUNT),
    ];
    if steady.is_some() {
        keys.push(Entry {
            key: Key::Band,
            label: "steady window".into(),
        });
    }
    legend(area, &keys)
}

/// The legend, in the column right of the chart on `area`, framed.
fn legend(area: &Area, entries: &[Entry]) -> Result<(), String> {
    let (_, column) = columns(area);
    const LINE: i32 = 17;
    let text =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let top = 40;
    let mut y = top + 14;
    for e in entries {
        match e.key {
            Key::Line(c) => {
                column.draw(&PathElement::new(vec![(12, y), (40, y)], c.stroke_width(3)))
            }
            Key::Band => column.draw(&Rectangle::new(
                [(12, y - 7), (40, y + 7)],
                STEADY.mix(0.45).filled(),
            )),
        }
        .map_err(err)?;
        for (i, l) in e.label.lines().enumerate() {
            column
                .draw(&Text::new(
                    l.to_string(),
                    (48, y + i as i32 * LINE),
                    text.clone(),
                ))
                .map_err(err)?;
        }
        y += LINE * e.label.lines().count().max(1) as i32 + 8;
    }
    let right = LEGEND_WIDTH as i32 - 10;
    column
        .draw(&Rectangle::new(
            [(4, top), (right, y - 4)],
            BLACK.mix(0.4).stroke_width(1),
        ))
        .map_err(err)
}

#[cfg(test)]
mod tests;

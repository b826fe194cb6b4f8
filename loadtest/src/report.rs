//! The run's report: what listeners felt (join, first audio, latency, jitter, loss), what the
//! server spent, per second and in total; as a table, JSON and an SVG plot.

use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::scenario::Scenario;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    pub t: f64,
    pub listeners: usize,
    pub received: u64,
    pub expected: u64,
    pub latency: Percentiles,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerCost {
    /// Bare SRTP protect + UDP send of one packet on this machine, same run (µs CPU).
    pub probe_us_per_packet: Option<f64>,
    /// Server CPU per packet it forwarded, over the run.
    pub cpu_us_per_forwarded_packet: Option<f64>,
    pub forwarded_packets: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub rss_bytes_per_peer: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub scenario: Option<Scenario>,
    pub interrupted: bool,
    pub elapsed_s: f64,
    pub hosts: usize,
    pub listeners_started: usize,
    pub listeners_with_audio: usize,
    pub join: Percentiles,
    pub first_audio: Percentiles,
    pub latency: Percentiles,
    pub jitter_mean_ms: f64,
    pub jitter_max_ms: f64,
    pub received_packets: u64,
    pub lost_packets: u64,
    pub delivery: f64,
    pub errors: Vec<String>,
    pub server: ServerCost,
    pub timeline: Vec<Second>,
}

impl Report {
    pub fn table(&self) -> String {
        let p = |x: &Percentiles| {
            format!(
                "{:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                x.p50_ms, x.p95_ms, x.p99_ms, x.max_ms
            )
        };
        let opt =
            |v: Option<f64>, unit: &str| v.map_or("n/a".to_string(), |v| format!("{v:.2} {unit}"));
        let mut out = String::new();
        out += &format!(
            "{}listeners: {} started, {} heard audio; hosts: {}; {:.1} s\n",
            if self.interrupted {
                "INTERRUPTED - partial report\n"
            } else {
                ""
            },
            self.listeners_started,
            self.listeners_with_audio,
            self.hosts,
            self.elapsed_s
        );
        out += "                     p50 ms   p95 ms   p99 ms   max ms\n";
        out += &format!("join             {}\n", p(&self.join));
        out += &format!("first audio      {}\n", p(&self.first_audio));
        out += &format!("end-to-end       {}\n", p(&self.latency));
        out += &format!(
            "jitter           mean {:.2} ms, max {:.2} ms\n",
            self.jitter_mean_ms, self.jitter_max_ms
        );
        out += &format!(
            "delivery         {:.3} % ({} received, {} lost)\n",
            self.delivery * 100.0,
            self.received_packets,
            self.lost_packets
        );
        out += &format!("errors           {}\n", self.errors.len());
        out += &format!(
            "server           {} CPU per forwarded packet, {} per peer\n",
            opt(self.server.cpu_us_per_forwarded_packet, "µs"),
            opt(self.server.rss_bytes_per_peer.map(|b| b / 1024.0), "KiB"),
        );
        if let Some(p) = self.server.probe_us_per_packet {
            out += &format!(
                "bare cost        {p:.2} µs per SRTP protect + UDP send ({} of it per forward)\n",
                self.server
                    .cpu_us_per_forwarded_packet
                    .map_or("n/a".to_string(), |c| format!("{:.2}x", c / p))
            );
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(
            path,
            serde_json::to_string_pretty(self).expect("serializable"),
        )
    }

    /// Latency percentiles and delivery over time.
    pub fn plot(&self, path: &Path) -> Result<(), String> {
        use plotters::prelude::*;
        let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(340);
        let t_max = self.timeline.last().map_or(1.0, |s| s.t.max(1.0));
        let l_max = self
            .timeline
            .iter()
            .map(|s| s.latency.p99_ms)
            .fold(1.0f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&top)
            .caption("End-to-end latency (ms)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..t_max, 0.0..l_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .draw()
            .map_err(|e| e.to_string())?;
        type Pick = fn(&Percentiles) -> f64;
        let series: [(&str, Pick, RGBColor); 3] = [
            ("p50", |p| p.p50_ms, BLUE),
            ("p95", |p| p.p95_ms, GREEN),
            ("p99", |p| p.p99_ms, RED),
        ];
        for (name, f, color) in series {
            chart
                .draw_series(LineSeries::new(
                    self.timeline
                        .iter()
                        .filter(|s| s.latency.count > 0)
                        .map(|s| (s.t, f(&s.latency))),
                    color,
                ))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&bottom)
            .caption("Delivery (%) and listeners", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..t_max, 0.0..101.0)
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().draw().map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                self.timeline.iter().filter(|s| s.expected > 0).map(|s| {
                    (
                        s.t,
                        (s.received as f64 / s.expected as f64 * 100.0).min(100.0),
                    )
                }),
                BLUE,
            ))
            .map_err(|e| e.to_string())?;
        let n_max = self
            .timeline
            .iter()
            .map(|s| s.listeners)
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        chart
            .draw_series(LineSeries::new(
                self.timeline
                    .iter()
                    .map(|s| (s.t, s.listeners as f64 / n_max * 100.0)),
                &BLACK.mix(0.4),
            ))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())
    }
}

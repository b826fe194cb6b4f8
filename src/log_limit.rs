//! Logs that cannot be flooded: warnings and errors from one source line (ours or a
//! library's, str0m's included) are written at most `burst` times per window; the rest are
//! counted, and the count is written with the next one that gets through. A client that sends
//! a thousand bad datagrams a second costs the log a few lines, not a thousand.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use tracing_subscriber::layer::{Context, Filter};

/// The decision for one event of one source line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Write,
    /// Written, after this many were dropped since the last one written.
    WriteAfter(u64),
    Drop,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    written: u32,
    dropped: u64,
}

/// Per key, `burst` events per `window`; plain logic with the time passed in.
#[derive(Debug)]
pub struct Limiter<K> {
    burst: u32,
    window: Duration,
    keys: HashMap<K, Window>,
}

impl<K: std::hash::Hash + Eq> Limiter<K> {
    pub fn new(burst: u32, window: Duration) -> Self {
        Self {
            burst,
            window,
            keys: HashMap::new(),
        }
    }

    pub fn check(&mut self, key: K, now: Instant) -> Verdict {
        let w = self.keys.entry(key).or_insert(Window {
            start: now,
            written: 0,
            dropped: 0,
        });
        if now.saturating_duration_since(w.start) >= self.window {
            w.start = now;
            w.written = 0;
        }
        if w.written >= self.burst {
            w.dropped += 1;
            return Verdict::Drop;
        }
        w.written += 1;
        match std::mem::take(&mut w.dropped) {
            0 => Verdict::Write,
            n => Verdict::WriteAfter(n),
        }
    }
}

/// The filter on the log's writer: warnings and errors rate-limited per source line, the rest
/// untouched (they are off by default, and turning them on is asking for volume).
pub struct RateLimit {
    limiter: Mutex<Limiter<Identifier>>,
}

impl RateLimit {
    /// Five per source line every ten seconds.
    pub fn new() -> Self {
        Self::with(5, Duration::from_secs(10))
    }

    pub fn with(burst: u32, window: Duration) -> Self {
        Self {
            limiter: Mutex::new(Limiter::new(burst, window)),
        }
    }

    fn limited(meta: &Metadata<'_>) -> bool {
        meta.is_event() && *meta.level() <= Level::WARN
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Filter<S> for RateLimit {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        if !Self::limited(meta) {
            return true;
        }
        let verdict = self
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(meta.callsite(), Instant::now());
        match verdict {
            Verdict::Write => true,
            Verdict::WriteAfter(n) => {
                // Its own source line, so limited like any other; the lock is released.
                tracing::warn!(
                    suppressed = n,
                    source = %format_args!(
                        "{}:{}",
                        meta.file().unwrap_or(meta.target()),
                        meta.line().unwrap_or(0)
                    ),
                    "repeated log lines were dropped"
                );
                true
            }
            Verdict::Drop => false,
        }
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::limited(meta) {
            // Asked again for every event: the answer depends on how many came before.
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    use super::*;

    #[test]
    fn a_burst_per_window_then_a_count() {
        let t0 = Instant::now();
        let mut l = Limiter::new(2, Duration::from_secs(10));
        assert_eq!(l.check("a", t0), Verdict::Write);
        assert_eq!(l.check("a", t0), Verdict::Write);
        assert_eq!(l.check("a", t0), Verdict::Drop);
        assert_eq!(
            l.check("b", t0),
            Verdict::Write,
            "other lines are not held back"
        );
        assert_eq!(l.check("a", t0), Verdict::Drop);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(l.check("a", t1), Verdict::WriteAfter(2));
        assert_eq!(l.check("a", t1), Verdict::Write);
    }

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flood_of_one_warning_writes_a_few_lines() {
        let out = Lines::default();
        let writer = out.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_filter(RateLimit::with(5, Duration::from_secs(3600)));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..1_000 {
                tracing::warn!(i, "garbage from a peer");
            }
            tracing::info!("an info line is not limited");
            tracing::info!("nor is a second one");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let garbage = text.lines().filter(|l| l.contains("garbage")).count();
        assert_eq!(garbage, 5, "{text}");
        assert_eq!(text.lines().filter(|l| l.contains("info line")).count(), 1);
        assert_eq!(text.lines().filter(|l| l.contains("second one")).count(), 1);
    }
}

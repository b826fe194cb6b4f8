//! Recording a channel's mix: the mixer hands each tick's shared encode (the bytes listeners
//! get, not a second encode) to a thread of the recording's own, which writes Ogg Opus pages to
//! the file. The mixer never waits on the disk: the hand-over is a bounded queue, and a full
//! queue drops the frame and counts it.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use amphi_core::channel::RecordingEnd;
use amphi_core::mix::ogg::OggOpusWriter;
use amphi_core::mix::FRAME_TICKS;
use amphi_proto::protocol::StreamEnd;

/// Frames waiting for the disk: five seconds of mix.
const QUEUE: usize = 250;
/// The mixer's encoder lookahead, skipped by players (RFC 7845 pre-skip).
const PRE_SKIP: u16 = 312;

/// How large and long a recording may grow.
#[derive(Debug, Clone, Copy)]
pub struct RecordLimits {
    pub max_bytes: u64,
    pub max_duration: Duration,
}

/// Called once when the recording ends, from its thread.
pub type RecordingDone = Box<dyn FnOnce(RecordingEnd) + Send>;

/// The mixer's end of a recording; dropping it finishes the file.
pub struct Recorder {
    tx: SyncSender<Arc<[u8]>>,
    /// Frames dropped because the disk fell behind.
    pub dropped: u64,
}

impl Recorder {
    /// Starts the thread writing `file` (already created). `active` counts running
    /// recordings; this one holds a place in it until it ends.
    pub fn start(
        name: &str,
        file: File,
        limits: RecordLimits,
        active: Arc<AtomicUsize>,
        done: RecordingDone,
    ) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        let name = name.to_string();
        std::thread::Builder::new()
            .name("amphi-record".into())
            .spawn(move || {
                let end = write(&name, file, limits, rx);
                active.fetch_sub(1, Ordering::AcqRel);
                done(end);
            })?;
        Ok(Self { tx, dropped: 0 })
    }

    /// One tick's mix; false once the recording has ended by itself (limit, error).
    pub fn push(&mut self, frame: &Arc<[u8]>) -> bool {
        match self.tx.try_send(frame.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.dropped > 0 {
            tracing::warn!(
                frames = self.dropped,
                "a recording lost frames: the disk fell behind"
            );
        }
    }
}

fn write(name: &str, file: File, limits: RecordLimits, rx: Receiver<Arc<[u8]>>) -> RecordingEnd {
    let serial = {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u32
    };
    let mut ogg = OggOpusWriter::new(serial, 1, PRE_SKIP);
    let mut out = std::io::BufWriter::new(file);
    let mut page = Vec::with_capacity(64 * 1024);
    let mut bytes = 0u64;
    let mut frames = 0u64;
    let max_frames = limits.max_duration.as_millis() as u64 / 20;
    let mut reason = None;
    ogg.headers(crate::protocol::SERVER_NAME, &mut page);
    let mut flush = |page: &mut Vec<u8>, bytes: &mut u64| -> std::io::Result<()> {
        out.write_all(page)?;
        *bytes += page.len() as u64;
        page.clear();
        Ok(())
    };
    let mut result = flush(&mut page, &mut bytes);
    while result.is_ok() {
        let Ok(frame) = rx.recv() else {
            break;
        };
        ogg.packet(&frame, FRAME_TICKS as u32, &mut page);
        frames += 1;
        if !page.is_empty() {
            result = flush(&mut page, &mut bytes);
        }
        // What is still held for the next page counts too: the file's size once finished.
        if bytes + 1024 >= limits.max_bytes || frames >= max_frames {
            reason = Some(StreamEnd::Limit);
            break;
        }
    }
    drop(rx);
    if result.is_ok() {
        ogg.finish(&mut page);
        result = flush(&mut page, &mut bytes);
    }
    let result = result
        .and_then(|()| out.into_inner().map_err(|e| e.into_error()))
        .and_then(|f| f.sync_all());
    if let Err(e) = result {
        tracing::warn!(file = %name, error = %e, "recording failed");
        reason = Some(StreamEnd::Error);
    }
    RecordingEnd {
        reason,
        bytes,
        duration_ms: frames * 20,
    }
}

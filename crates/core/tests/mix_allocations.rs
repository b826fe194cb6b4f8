//! The mixer allocates nothing per tick in steady state: four speakers through real Opus
//! decoders and encoders, 1,000 ticks, counted by the global allocator; and neither do the
//! shared packets its output is sent in (the packet pool), held until the next tick.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use amphi_core::mix::codec::{Encode, EncoderSettings, OpusDecoder, OpusEncoder};
use amphi_core::mix::mixer::Mixer;
use amphi_core::mix::pool::PacketPool;
use amphi_core::mix::{FRAME, MAX_PACKET};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_thousand_steady_ticks_with_four_speakers_allocate_nothing() {
    const SPEAKERS: u64 = 4;
    const WARM_UP: u64 = 50;
    const TICKS: u64 = 1_000;
    // Each speaker's packets, encoded beforehand: a tone of its own.
    let packets: Vec<Vec<Vec<u8>>> = (0..SPEAKERS)
        .map(|k| {
            let mut enc = OpusEncoder::new(EncoderSettings::default());
            (0..WARM_UP + TICKS)
                .map(|f| {
                    let mut pcm = [0i16; FRAME];
                    for (i, s) in pcm.iter_mut().enumerate() {
                        let t = (f as usize * FRAME + i) as f64 / 48_000.0;
                        let freq = 300.0 + 100.0 * k as f64;
                        *s = (8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16;
                    }
                    let mut out = [0u8; MAX_PACKET];
                    let n = enc.encode(&pcm, &mut out).unwrap();
                    out[..n].to_vec()
                })
                .collect()
        })
        .collect();
    let mut mixer = Mixer::new(OpusEncoder::new(EncoderSettings::default()), 8);
    for k in 0..SPEAKERS {
        mixer.add_speaker(
            k,
            OpusDecoder::new(),
            OpusEncoder::new(EncoderSettings::default()),
        );
    }
    let mut encodes = 0;
    let mut pool = PacketPool::for_bitrate(EncoderSettings::default().bitrate_bps);
    // A tick's packets, held until the next tick as other workers' queues, the pacer and a
    // recording hold them (each lets go within milliseconds; a tick is 20).
    let mut held: Vec<std::sync::Arc<[u8]>> = Vec::with_capacity(SPEAKERS as usize + 1);
    for f in 0..WARM_UP + TICKS {
        if f == WARM_UP {
            COUNTING.store(true, Ordering::SeqCst);
        }
        let at = Duration::from_millis(20 * f);
        for k in 0..SPEAKERS {
            let p = &packets[k as usize][f as usize];
            mixer.push(k, f, f * FRAME as u64, at, p, None);
        }
        let tick = mixer.tick();
        if f >= WARM_UP {
            assert!(!tick.silent);
            encodes += tick.encodes;
        }
        held.clear();
        held.push(pool.share(mixer.total()));
        for k in 0..SPEAKERS {
            if let Some(minus) = mixer.mix_minus(k) {
                held.push(pool.share(minus));
            }
        }
    }
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(
        encodes as u64,
        TICKS * (SPEAKERS + 1),
        "speakers + 1 encodes a tick"
    );
    assert_eq!(
        ALLOCS.load(Ordering::SeqCst),
        0,
        "allocations in steady ticks (pool keeps {} buffers)",
        pool.kept()
    );
}

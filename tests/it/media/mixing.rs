//! The server's mixer as listeners and speakers hear it: one stream for every mixed
//! listener, mix-minus for speakers, live switches, concealment, levels and `auto`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixing_a_listener_hears_both_hosts_in_one_stream_and_each_host_only_the_other() {
    use amphi_client::audio::goertzel;
    let (server, (_ls, l)) = mixing("mix").await;
    let hosts = tone_hosts(&server, "mix", &[("h1", 440.0, 0), ("h2", 660.0, 0)]).await;
    // Two seconds of mix heard by everyone.
    assert!(
        l.wait_packets(100, SECS).await,
        "the listener hears the mix"
    );
    for (_, h) in &hosts {
        assert!(h.wait_packets(100, SECS).await, "a host hears the others");
    }
    let stats = l.stats();
    let heard: Vec<_> = stats.slots.iter().filter(|s| s.packets > 0).collect();
    assert_eq!(heard.len(), 1, "one stream carries the mix");
    let mix = &heard[0];
    assert_eq!(mix.decode_errors, 0);
    let (a, b) = both_tones(&mix.samples);
    assert!(
        a < 10.0 * b && b < 10.0 * a,
        "neither drowns the other: {a} {b}"
    );
    // One encode of the mix and one mix-minus per speaker each tick, whatever the audience.
    let encodes = "amphi_mixer_encodes_total";
    let ticks = "amphi_mixer_ticks_total";
    // Both series from one scrape: workers publish them together.
    let text = metrics_text(&server).await;
    let (e0, t0) = (metric_in(&text, encodes), metric_in(&text, ticks));
    let mark = l.received_packets();
    assert!(l.wait_packets(mark + 50, SECS).await);
    wait_metric(&server, ticks, t0 + 40.0, SECS).await;
    let text = metrics_text(&server).await;
    let (e1, t1) = (metric_in(&text, encodes), metric_in(&text, ticks));
    assert!(t1 - t0 >= 40.0);
    assert_eq!(e1 - e0, 3.0 * (t1 - t0), "speakers + 1 encodes per tick");
    // A tick runs late only when the worker's thread was held off the CPU for 20 ms.
    let late = metric_in(&text, "amphi_mixer_late_ticks_total");
    assert!(late <= 0.05 * t1, "{late} late ticks of {t1}");
    for ((_, h), (own, other)) in hosts.iter().zip([(440.0, 660.0), (660.0, 440.0)]) {
        let stats = h.stats();
        let slot = stats.slots.iter().find(|s| s.packets > 0).unwrap();
        let tail = &slot.samples[slot.samples.len().saturating_sub(24_000)..];
        let (own_p, other_p) = (goertzel(tail, own), goertzel(tail, other));
        assert!(
            other_p > 50.0 * own_p,
            "a host hears the other ({other_p}), not itself ({own_p})"
        );
    }
}

/// `moderator` sets the policy of channel "live"; the `mix_changed` event `member` then sees.
async fn set_mix(moderator: &Signal, member: &Signal, policy: &str) -> serde_json::Value {
    moderator
        .request("set_mix", json!({"channel": "live", "policy": policy}))
        .await
        .unwrap();
    member
        .wait_event("mix_changed", SECS)
        .await
        .expect("mix_changed")
}

/// A server whose channels mix, with a listener in `channel`.
async fn mixing(channel: &str) -> (amphi::ServerHandle, (Signal, AudioPeer)) {
    let server = start_with(|c| c.media.mix_policy = amphi::config::MixPolicy::Mix);
    let l = listener(&server, channel, "l").await;
    (server, l)
}

/// Hosts in `channel` publishing tones: (identity, frequency, one packet in N lost on the way
/// or 0), each keeping the audio it hears.
async fn tone_hosts(
    server: &amphi::ServerHandle,
    channel: &str,
    hosts: &[(&str, f64, u64)],
) -> Vec<(Signal, AudioPeer)> {
    let mut out = Vec::new();
    for &(name, freq, drop_every) in hosts {
        let s = signal(server, name, "host").await;
        s.join(channel, "host").await.unwrap();
        let opts = PeerOptions {
            publish: Some(Box::new(Tone::new(freq))),
            slots: 1,
            keep_audio: true,
            drop_every,
            ..PeerOptions::default()
        };
        let p = AudioPeer::start(&s, channel, opts).await.unwrap();
        assert!(p.wait_connected(SECS).await, "{name} connected");
        out.push((s, p));
    }
    out
}

/// The power of 440 and 660 Hz in the last half second of `samples`, both asserted well
/// above the noise (at 1 kHz): the mix of the two hosts.
fn both_tones(samples: &[i16]) -> (f64, f64) {
    use amphi_client::audio::goertzel;
    let tail = &samples[samples.len().saturating_sub(24_000)..];
    let (a, b, none) = (
        goertzel(tail, 440.0),
        goertzel(tail, 660.0),
        goertzel(tail, 1000.0),
    );
    assert!(
        a > 20.0 * none && b > 20.0 * none,
        "both tones in the mix: {a} {b} {none}"
    );
    (a, b)
}

/// Waits until each slot whose packet count is in `marks` got `n` more; the slots' stats.
async fn more_on(l: &AudioPeer, slots: &[usize], n: u64) -> Vec<amphi_client::SlotStats> {
    let marks: Vec<u64> = {
        let s = l.stats();
        slots.iter().map(|&i| s.slots[i].packets).collect()
    };
    eventually(SECS, || {
        let s = l.stats();
        slots
            .iter()
            .zip(&marks)
            .all(|(&i, m)| s.slots[i].packets >= m + n)
    })
    .await;
    l.stats().slots
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_switches_a_live_channel_to_the_mix_and_back() {
    use amphi_client::audio::goertzel;
    let server = start();
    let (ls, l) = listener(&server, "live", "l").await;
    let (h1s, _h1, h1_id) = host(&server, "live", "h1", 440.0).await;
    let (_h2s, _h2, _) = host(&server, "live", "h2", 660.0).await;
    // Forwarded: two slots, one host each.
    let slots = more_on(&l, &[0, 1], 50).await;
    assert!(slots[0].packets >= 50 && slots[1].packets >= 50);
    let err = ls
        .request("set_mix", json!({"channel": "live", "policy": "mix"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("forbidden"), "{err}");
    let ev = set_mix(&h1s, &ls, "mix").await;
    assert_eq!(
        (ev["policy"].as_str(), ev["mixing"].as_bool()),
        (Some("mix"), Some(true))
    );
    // Mixed: the first slot carries both tones; the second falls silent.
    let before = l.stats().slots[1].packets;
    let slots = more_on(&l, &[0], 100).await;
    both_tones(&slots[0].samples);
    assert!(slots[1].packets <= before + 5, "the second slot stopped");
    // A moderator turns the first host down to nothing in the mix.
    let err = ls
        .request(
            "set_volume",
            json!({"channel": "live", "participant": h1_id, "gain": 0.0}),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("forbidden"), "{err}");
    h1s.request(
        "set_volume",
        json!({"channel": "live", "participant": h1_id, "gain": 0.0}),
    )
    .await
    .unwrap();
    let slots = more_on(&l, &[0], 100).await;
    let tail = &slots[0].samples[slots[0].samples.len() - 24_000..];
    let (a, b) = (goertzel(tail, 440.0), goertzel(tail, 660.0));
    assert!(
        b > 100.0 * a,
        "the silenced host is out of the mix: {a} {b}"
    );
    // And back: each host on its own slot again.
    let ev = set_mix(&h1s, &ls, "forward").await;
    assert_eq!(ev["mixing"].as_bool(), Some(false));
    let slots = more_on(&l, &[0, 1], 100).await;
    for s in &slots {
        let tail = &s.samples[s.samples.len() - 24_000..];
        let (a, b) = (goertzel(tail, 440.0), goertzel(tail, 660.0));
        assert!(a > 50.0 * b || b > 50.0 * a, "one host per slot: {a} {b}");
        assert_eq!(s.decode_errors, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixing_conceals_a_lossy_speaker_and_the_mix_stays_continuous() {
    use amphi_client::audio::goertzel;
    let (server, (_ls, l)) = mixing("lossy").await;
    // One host loses one packet in ten on its way to the server.
    let _hosts = tone_hosts(&server, "lossy", &[("h1", 440.0, 10), ("h2", 660.0, 0)]).await;
    assert!(l.wait_packets(50, SECS).await);
    let concealed = "amphi_mixer_concealed_frames_total";
    let before = metric(&server, concealed).await;
    let mark = l.received_packets();
    assert!(
        l.wait_packets(mark + 100, SECS).await,
        "two more seconds of mix"
    );
    let after = wait_metric(&server, concealed, before + 5.0, SECS).await;
    assert!(
        after >= before + 5.0,
        "losses concealed: {before} -> {after}"
    );
    // What the listener decodes has no gap: every 20 ms of the mix arrived and decoded.
    let stats = l.stats();
    let mix = stats.slots.iter().find(|s| s.packets > 0).unwrap();
    assert_eq!(mix.lost(), 0, "the mix stream lost nothing");
    assert_eq!(mix.decode_errors, 0);
    assert_eq!(mix.decoded_frames, mix.packets);
    let tail = &mix.samples[mix.samples.len().saturating_sub(48_000)..];
    let (a, b) = (goertzel(tail, 440.0), goertzel(tail, 660.0));
    assert!(a > b / 10.0 && b > a / 10.0, "both still heard: {a} {b}");
}

/// Samples what `l` has received every 5 ms while `during` runs, then for `after` more: the
/// longest stretch in which nothing new arrived, and what `during` returned.
async fn longest_silence<T>(
    l: &AudioPeer,
    during: impl std::future::Future<Output = T>,
    after: Duration,
) -> (Duration, T) {
    let mut last = (std::time::Instant::now(), l.received_packets());
    let mut longest = Duration::ZERO;
    let mut sample = |longest: &mut Duration| {
        let now = std::time::Instant::now();
        let n = l.received_packets();
        if n > last.1 {
            *longest = (*longest).max(now - last.0);
            last = (now, n);
        }
    };
    tokio::pin!(during);
    let out = loop {
        tokio::select! {
            out = &mut during => break out,
            _ = tokio::time::sleep(Duration::from_millis(5)) => sample(&mut longest),
        }
    };
    let end = std::time::Instant::now() + after;
    while std::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(5)).await;
        sample(&mut longest);
    }
    (longest, out)
}

/// Encodes and ticks of the mixers over at least 40 ticks (while `l` keeps receiving), both
/// read from the same scrapes.
async fn encodes_and_ticks(server: &amphi::ServerHandle, l: &AudioPeer) -> (f64, f64) {
    let (encodes, ticks) = ("amphi_mixer_encodes_total", "amphi_mixer_ticks_total");
    let text = metrics_text(server).await;
    let (e0, t0) = (metric_in(&text, encodes), metric_in(&text, ticks));
    let mark = l.received_packets();
    assert!(l.wait_packets(mark + 50, SECS).await);
    wait_metric(server, ticks, t0 + 40.0, SECS).await;
    let text = metrics_text(server).await;
    let (e1, t1) = (metric_in(&text, encodes), metric_in(&text, ticks));
    assert!(t1 - t0 >= 40.0, "{t0} -> {t1} ticks");
    (e1 - e0, t1 - t0)
}

/// Asserts that slots `slots` of `l` each carry one of the two hosts' tones, not both.
async fn one_host_per_slot(l: &AudioPeer, slots: &[usize]) {
    use amphi_client::audio::goertzel;
    eventually(SECS, || {
        l.stats().slots.len() > *slots.iter().max().unwrap()
    })
    .await;
    let stats = more_on(l, slots, 100).await;
    for &i in slots {
        let s = &stats[i];
        let tail = &s.samples[s.samples.len() - 24_000..];
        let (a, b) = (goertzel(tail, 440.0), goertzel(tail, 660.0));
        assert!(
            a > 50.0 * b || b > 50.0 * a,
            "one host on slot {i}: {a} {b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_picks_the_mix_or_the_speakers_streams_whatever_the_channel_does() {
    use amphi_client::AudioMode;
    let server = start();
    // A listener on a weak network asks for one stream in a forwarding channel.
    let ws = signal(&server, "weak", "audience").await;
    let reply = ws
        .join_with_audio("pick", "audience", AudioMode::Mixed)
        .await
        .unwrap();
    assert_eq!(
        (reply["audio"].as_str(), reply["mixing"].as_bool()),
        (Some("mixed"), Some(false))
    );
    let opts = PeerOptions {
        slots: 1,
        keep_audio: true,
        ..PeerOptions::default()
    };
    let weak = AudioPeer::start(&ws, "pick", opts).await.unwrap();
    assert!(weak.wait_connected(SECS).await);
    let (fs, f) = listener(&server, "pick", "f").await;
    let hosts = tone_hosts(&server, "pick", &[("h1", 440.0, 0), ("h2", 660.0, 0)]).await;
    // Its one slot carries both hosts; the other listener hears each host on its own slot.
    let slots = more_on(&weak, &[0], 100).await;
    both_tones(&slots[0].samples);
    assert_eq!(slots[0].decode_errors, 0);
    one_host_per_slot(&f, &[0, 1]).await;
    // One shared encode a tick and no mix-minus: no speaker hears the mix.
    let (encodes, ticks) = encodes_and_ticks(&server, &weak).await;
    assert_eq!(encodes, ticks, "one encode per tick");
    // Live switches: the weak listener takes the streams (one more slot, negotiated once),
    // the other takes the mix on the slot it has.
    ws.set_audio("pick", AudioMode::Forwarded).await.unwrap();
    fs.set_audio("pick", AudioMode::Mixed).await.unwrap();
    one_host_per_slot(&weak, &[0, 1]).await;
    let slots = more_on(&f, &[0], 100).await;
    both_tones(&slots[0].samples);
    // The channel mixes: speakers hear the mix without themselves; the listener that asked
    // for streams keeps them.
    let (h1s, _) = &hosts[0];
    h1s.request("set_mix", json!({"channel": "pick", "policy": "mix"}))
        .await
        .unwrap();
    for (_, h) in &hosts {
        let mark = h.received_packets();
        assert!(
            h.wait_packets(mark + 25, SECS).await,
            "a host hears the mix"
        );
    }
    let (encodes, ticks) = encodes_and_ticks(&server, &f).await;
    assert_eq!(encodes, 3.0 * ticks, "the shared encode and two mix-minus");
    one_host_per_slot(&weak, &[0, 1]).await;
    assert!(ws.set_audio("nowhere", AudioMode::Mixed).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_mixing_speakers_levels_come_from_the_decoded_audio() {
    let (server, (ls, l)) = mixing("levels").await;
    // The host sends no audio-level extension: only the mixer can tell it speaks.
    let s = signal(&server, "quiet-header", "host").await;
    let reply = s.join("levels", "host").await.unwrap();
    let id = reply["participant"].as_str().unwrap().to_string();
    let opts = PeerOptions {
        publish: Some(Box::new(Tone::new(440.0))),
        slots: 1,
        omit_levels: true,
        ..PeerOptions::default()
    };
    let h = AudioPeer::start(&s, "levels", opts).await.unwrap();
    assert!(h.wait_connected(SECS).await);
    assert!(l.wait_packets(25, SECS).await);
    let e = ls
        .wait_event("active_speaker", SECS)
        .await
        .expect("active_speaker while mixing");
    assert_eq!(e["participant"].as_str(), Some(id.as_str()));
    let e = ls
        .wait_event("audio_levels", SECS)
        .await
        .expect("audio_levels while mixing");
    assert_eq!(e["speakers"][0]["participant"].as_str(), Some(id.as_str()));
    assert!(e["speakers"][0]["volume"].as_u64().unwrap() > 0);
    // Silence costs nothing: once the host stops, the mixer stops ticking (its jitter buffer
    // drained) and nothing more is sent.
    h.set_sending(false).await;
    let ticks = "amphi_mixer_ticks_total";
    let mut settled = false;
    let deadline = std::time::Instant::now() + SECS;
    while !settled && std::time::Instant::now() < deadline {
        let before = metric(&server, ticks).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        settled = metric(&server, ticks).await == before;
    }
    assert!(settled, "the mixer of a silent channel stops ticking");
    let heard = l.received_packets();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(l.received_packets(), heard, "and sends nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mixes_from_the_third_unmuted_host_and_listeners_keep_hearing() {
    let server = start_with(|c| {
        c.media.mix_policy = amphi::config::MixPolicy::Auto;
        c.media.mix_auto_above = 2;
    });
    let (ls, l) = listener(&server, "auto", "l").await;
    let _two = tone_hosts(&server, "auto", &[("h1", 440.0, 0), ("h2", 660.0, 0)]).await;
    assert!(l.wait_packets(100, SECS).await);
    // Bound on a gap: the largest jitter buffer (10 frames) plus 100 ms.
    let bound = Duration::from_millis(300);
    // The third host joins, unmuted: the channel mixes, and the listener keeps hearing.
    let third = async {
        let h3 = tone_hosts(&server, "auto", &[("h3", 880.0, 0)]).await;
        let ev = ls
            .wait_event("mix_changed", SECS)
            .await
            .expect("mix_changed");
        assert_eq!(ev["mixing"].as_bool(), Some(true), "{ev}");
        h3
    };
    let (gap, h3) = longest_silence(&l, third, Duration::from_secs(1)).await;
    assert!(gap <= bound, "silent for {gap:?} when mixing began");
    // It mutes itself: back to forwarding, and again no long gap.
    let mute = async {
        h3[0]
            .0
            .request("mute", json!({"channel": "auto", "muted": true}))
            .await
            .unwrap();
        let ev = ls
            .wait_event("mix_changed", SECS)
            .await
            .expect("mix_changed");
        assert_eq!(ev["mixing"].as_bool(), Some(false), "{ev}");
    };
    let (gap, ()) = longest_silence(&l, mute, Duration::from_secs(1)).await;
    assert!(gap <= bound, "silent for {gap:?} when forwarding came back");
}

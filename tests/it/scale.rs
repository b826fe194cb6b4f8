//! Audience-scale signalling: 1,000 audience members in one channel cost a linear number of
//! messages, not one per pair.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const AUDIENCE: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_audience_members_cost_linear_messages() {
    let interval = Duration::from_millis(500);
    let server = start_with(|c| c.timeouts.audience_count_interval = interval);
    let mut hosts = Vec::new();
    for name in ["h1", "h2"] {
        let mut h = Client::as_(&server, name, &["host"]).await;
        h.join("big", "host").await;
        hosts.push(h);
    }
    hosts[0].event("participant_joined").await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    // Hosts read all along, as real clients do; each counts what it receives and stays
    // connected until the end.
    let host_seen: Vec<Arc<AtomicUsize>> = (0..hosts.len()).map(|_| Arc::default()).collect();
    let host_tasks: Vec<_> = hosts
        .into_iter()
        .zip(host_seen.clone())
        .map(|(mut h, seen)| {
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0usize;
                loop {
                    tokio::select! {
                        _ = stop.changed() => break,
                        msg = h.ws.next() => match msg {
                            Some(Ok(Message::Text(_))) => {
                                n += 1;
                                seen.store(n, Ordering::Relaxed);
                            }
                            Some(Ok(_)) => {}
                            _ => panic!("host connection ended"),
                        }
                    }
                }
                (n, h)
            })
        })
        .collect();

    let started = Instant::now();
    let mut tasks = Vec::new();
    let joined = Arc::new(AtomicUsize::new(0));
    // Audience members who have seen the final count (everyone in).
    let settled = Arc::new(AtomicUsize::new(0));
    for chunk in 0..AUDIENCE / 100 {
        let names: Vec<String> = (0..100).map(|i| format!("a{}", chunk * 100 + i)).collect();
        let batch = names.iter().map(|n| Client::as_(&server, n, &["audience"]));
        let clients = futures_util::future::join_all(batch).await;
        for mut c in clients {
            let mut stop = stop.clone();
            let joined = joined.clone();
            let settled = settled.clone();
            tasks.push(tokio::spawn(async move {
                let reply = c.join("big", "audience").await;
                joined.fetch_add(1, Ordering::Relaxed);
                let mut frames = 2; // welcome + join reply
                let mut last_count = reply["audience_count"].as_u64().unwrap();
                let mut counts = 0;
                let mut marked = false;
                if last_count == AUDIENCE as u64 {
                    settled.fetch_add(1, Ordering::Relaxed);
                    marked = true;
                }
                loop {
                    tokio::select! {
                        biased;
                        _ = stop.changed() => break,
                        msg = c.ws.next() => match msg {
                            Some(Ok(Message::Text(t))) => {
                                frames += 1;
                                let v: Value = serde_json::from_str(&t).unwrap();
                                assert_eq!(v["event"], "audience_count", "audience saw {v}");
                                last_count = v["count"].as_u64().unwrap();
                                counts += 1;
                                if last_count == AUDIENCE as u64 && !marked {
                                    settled.fetch_add(1, Ordering::Relaxed);
                                    marked = true;
                                }
                            }
                            Some(Ok(_)) => {}
                            _ => panic!("audience connection ended"),
                        }
                    }
                }
                // The client is handed back, not dropped: a disconnect now would change
                // the count the others are still reading.
                (frames, counts, last_count, c)
            }));
        }
    }
    assert!(
        eventually(Duration::from_secs(60), || joined.load(Ordering::Relaxed)
            == AUDIENCE)
        .await
    );
    let join_time = started.elapsed();
    // The trailing count reaches every member, and the hosts have read every join.
    let everyone = eventually(Duration::from_secs(30), || {
        settled.load(Ordering::Relaxed) == AUDIENCE
            && host_seen
                .iter()
                .all(|n| n.load(Ordering::Relaxed) >= AUDIENCE)
    })
    .await;
    assert!(
        everyone,
        "{} of {AUDIENCE} saw the final count",
        settled.load(Ordering::Relaxed)
    );
    let elapsed = started.elapsed();

    stop_tx.send(true).unwrap();
    let mut host_frames = Vec::new();
    let mut keep = Vec::new();
    for t in host_tasks {
        let (n, h) = t.await.unwrap();
        host_frames.push(n);
        keep.push(h);
    }
    let mut total = host_frames.iter().sum::<usize>();
    let max_counts = (elapsed.as_secs_f64() / interval.as_secs_f64()).ceil() as usize + 2;
    let results: Vec<_> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for (frames, counts, last, _client) in results {
        total += frames;
        assert!(counts <= max_counts, "{counts} counts in {elapsed:?}");
        assert_eq!(last, AUDIENCE as u64, "the final count reaches everyone");
    }
    // Hosts: one event per audience join plus throttled counts.
    for n in &host_frames {
        assert!(
            *n >= AUDIENCE && *n <= AUDIENCE + max_counts,
            "host got {n}"
        );
    }
    let linear_bound = AUDIENCE * (2 + max_counts) + host_frames.len() * (AUDIENCE + max_counts);
    eprintln!(
        "{AUDIENCE} audience joined in {join_time:?}; {total} frames in all (bound {linear_bound}, \
         a per-pair fan-out would be {})",
        AUDIENCE * AUDIENCE / 2
    );
    assert!(total <= linear_bound);
    assert!(total < AUDIENCE * AUDIENCE / 20);
}

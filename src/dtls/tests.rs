use super::*;
use foreign_types::ForeignType;

/// What one side's outputs said, collected while pumping datagrams between two sides.
#[derive(Default)]
struct Seen {
    peer_cert: Option<Vec<u8>>,
    keys: Option<(Vec<u8>, SrtpProfile)>,
    connected: bool,
    close_notify: bool,
    data: Vec<Vec<u8>>,
}

fn drain(side: &mut dyn DtlsInstance, seen: &mut Seen, out: &mut Vec<Vec<u8>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        match side.poll_output(&mut buf) {
            DtlsOutput::Packet(p) => out.push(p.to_vec()),
            DtlsOutput::PeerCert(c) => seen.peer_cert = Some(c.to_vec()),
            DtlsOutput::KeyingMaterial(k, p) => seen.keys = Some((k.to_vec(), p)),
            DtlsOutput::Connected => seen.connected = true,
            DtlsOutput::CloseNotify => seen.close_notify = true,
            DtlsOutput::ApplicationData(d) => seen.data.push(d.to_vec()),
            DtlsOutput::Timeout(_) => return,
            other => panic!("unexpected output {other:?}"),
        }
    }
}

/// Moves datagrams both ways until neither side has anything to send.
fn pump(a: &mut dyn DtlsInstance, sa: &mut Seen, b: &mut dyn DtlsInstance, sb: &mut Seen) {
    for _ in 0..20 {
        let (mut to_b, mut to_a) = (vec![], vec![]);
        drain(a, sa, &mut to_b);
        drain(b, sb, &mut to_a);
        if to_a.is_empty() && to_b.is_empty() {
            return;
        }
        for d in to_b {
            b.handle_packet(&d).expect("b takes a's datagram");
        }
        for d in to_a {
            a.handle_packet(&d).expect("a takes b's datagram");
        }
    }
    panic!("the handshake did not settle in 20 rounds");
}

/// A new instance of ours in the given role, started as str0m starts one.
fn started(active: bool, now: Instant) -> Box<dyn DtlsInstance> {
    let mut s = provider()
        .dtls_provider
        .new_dtls(&cert(), now, DtlsVersion::Dtls12, None)
        .unwrap();
    s.set_active(active);
    s.handle_timeout(now).unwrap();
    s
}

/// What `side` sends again once OpenSSL's retransmission timer fires (it runs on the real
/// clock, so this waits for the deadline `side` reports, at most until `give_up`).
fn retransmitted(side: &mut dyn DtlsInstance, seen: &mut Seen, give_up: Instant) -> Vec<Vec<u8>> {
    let mut out = vec![];
    let mut buf = vec![0u8; 4096];
    while out.is_empty() {
        // Sleeps until the deadline the instance itself reports: the timer under test.
        let DtlsOutput::Timeout(due) = side.poll_output(&mut buf) else {
            panic!("output pending before the timer fired");
        };
        assert!(due < give_up, "no retransmission timer before {give_up:?}");
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        side.handle_timeout(Instant::now()).unwrap();
        drain(side, seen, &mut out);
    }
    out
}

fn cert() -> DtlsCert {
    provider()
        .dtls_provider
        .generate_certificate()
        .expect("a certificate")
}

struct Pair {
    server: Box<dyn DtlsInstance>,
    client: Box<dyn DtlsInstance>,
    seen_server: Seen,
    seen_client: Seen,
    server_cert: DtlsCert,
    client_cert: DtlsCert,
}

/// A passive server on `server_side` and an active client on `client_side`, handshaken.
fn handshake(server_side: &CryptoProvider, client_side: &CryptoProvider) -> Pair {
    let now = Instant::now();
    let (server_cert, client_cert) = (cert(), cert());
    let new = |p: &CryptoProvider, c: &DtlsCert| {
        p.dtls_provider
            .new_dtls(c, now, DtlsVersion::Dtls12, None)
            .expect("an instance")
    };
    let mut server = new(server_side, &server_cert);
    let mut client = new(client_side, &client_cert);
    server.set_active(false);
    client.set_active(true);
    server.handle_timeout(now).unwrap();
    client.handle_timeout(now).unwrap();
    client.handle_packet(&[]).unwrap(); // what str0m does to start an active side
    let (mut seen_server, mut seen_client) = (Seen::default(), Seen::default());
    pump(
        &mut *server,
        &mut seen_server,
        &mut *client,
        &mut seen_client,
    );
    Pair {
        server,
        client,
        seen_server,
        seen_client,
        server_cert,
        client_cert,
    }
}

fn settled(side: &dyn DtlsInstance) -> bool {
    format!("{side:?}").contains("settled: true")
}

fn assert_agreed(p: &Pair) {
    assert!(p.seen_server.connected && p.seen_client.connected);
    assert_eq!(
        p.seen_server.peer_cert.as_ref(),
        Some(&p.client_cert.certificate)
    );
    assert_eq!(
        p.seen_client.peer_cert.as_ref(),
        Some(&p.server_cert.certificate)
    );
    let (sk, sp) = p.seen_server.keys.clone().expect("server keys");
    let (ck, cp) = p.seen_client.keys.clone().expect("client keys");
    assert_eq!(sp, cp);
    assert_eq!(sk, ck, "both sides export the same SRTP keying material");
    assert_eq!(sk.len(), sp.keying_material_len());
    assert!(sk.iter().any(|b| *b != 0));
}

#[test]
fn two_sessions_agree_on_keys_and_prefer_aes_256_gcm() {
    let p = handshake(&provider(), &provider());
    assert_agreed(&p);
    let (_, profile) = p.seen_server.keys.clone().unwrap();
    assert_eq!(profile, SrtpProfile::AEAD_AES_256_GCM);
    assert_eq!(p.server.protocol_version(), Some(ProtocolVersion::DTLS1_2));
    assert!(
        settled(&*p.server) && settled(&*p.client),
        "OpenSSL's sessions were let go"
    );
}

#[test]
fn interoperates_with_str0ms_own_openssl_dtls_both_ways() {
    let theirs = str0m::crypto::from_feature_flags();
    let p = handshake(&provider(), &theirs);
    assert_agreed(&p);
    assert_eq!(
        p.seen_server.keys.as_ref().unwrap().1,
        SrtpProfile::AEAD_AES_256_GCM
    );
    let p = handshake(&theirs, &provider());
    assert_agreed(&p);
}

#[test]
fn peers_of_one_certificate_share_one_context() {
    let c = cert();
    let a = context_for(&c).unwrap();
    let b = context_for(&c).unwrap();
    assert_eq!(a.as_ptr(), b.as_ptr());
    let other = context_for(&cert()).unwrap();
    assert_ne!(a.as_ptr(), other.as_ptr());
}

/// Closes `p` from the server (or the client) side; the other side must be told.
fn close_from(p: &mut Pair, server_closes: bool) {
    let closer = if server_closes {
        &mut p.server
    } else {
        &mut p.client
    };
    closer.close().unwrap();
    assert!(closer.is_closing());
    pump(
        &mut *p.server,
        &mut p.seen_server,
        &mut *p.client,
        &mut p.seen_client,
    );
    let (told, closer_told) = if server_closes {
        (p.seen_client.close_notify, p.seen_server.close_notify)
    } else {
        (p.seen_server.close_notify, p.seen_client.close_notify)
    };
    assert!(told, "the other side was told");
    assert!(
        closer_told,
        "the other side answered with its own close_notify"
    );
    assert!(p.server.is_closing() && p.client.is_closing());
    assert!(p.server.is_closed() || p.client.is_closed());
}

#[test]
fn data_and_close_notify_cross_between_settled_sessions_and_openssl_both_ways() {
    let theirs = str0m::crypto::from_feature_flags();
    for (server_side, client_side, label) in [
        (provider(), provider(), "ours to ours"),
        (provider(), theirs.clone(), "our server, OpenSSL client"),
        (theirs.clone(), provider(), "OpenSSL server, our client"),
    ] {
        for server_closes in [true, false] {
            let mut p = handshake(&server_side, &client_side);
            assert_agreed(&p);
            // A data channel's records, both ways, before the close.
            p.client
                .send_application_data(b"sctp from the client")
                .unwrap();
            p.server
                .send_application_data(b"sctp from the server")
                .unwrap();
            pump(
                &mut *p.server,
                &mut p.seen_server,
                &mut *p.client,
                &mut p.seen_client,
            );
            assert_eq!(
                p.seen_server.data,
                vec![b"sctp from the client".to_vec()],
                "{label}"
            );
            assert_eq!(
                p.seen_client.data,
                vec![b"sctp from the server".to_vec()],
                "{label}"
            );
            close_from(&mut p, server_closes);
            eprintln!("{label}, server closes: {server_closes}: ok");
        }
    }
}

#[test]
fn garbage_and_forged_alerts_after_the_handshake_are_ignored() {
    let theirs = str0m::crypto::from_feature_flags();
    let mut p = handshake(&provider(), &theirs);
    // A forged alert (content type 21, epoch 1) that does not authenticate, a forged
    // application-data record, and plain noise.
    let mut alert = vec![21, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 26];
    alert.extend([0x55; 26]);
    let mut data = vec![23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 40];
    data.extend([0x55; 40]);
    for d in [&alert[..], &data, &[0xff; 100], &[21]] {
        p.server.handle_packet(d).expect("dropped, not fatal");
    }
    pump(
        &mut *p.server,
        &mut p.seen_server,
        &mut *p.client,
        &mut p.seen_client,
    );
    assert!(p.seen_server.data.is_empty());
    assert!(!p.seen_server.close_notify && !p.server.is_closing());
    // Still the same session: the peer's real close_notify is recognised.
    close_from(&mut p, false);
}

#[test]
fn data_before_the_handshake_is_refused_as_pending() {
    let mut s = provider()
        .dtls_provider
        .new_dtls(&cert(), Instant::now(), DtlsVersion::Dtls12, None)
        .unwrap();
    s.set_active(false);
    assert!(matches!(
        s.send_application_data(b"x"),
        Err(DtlsImplError::HandshakePending)
    ));
}

#[test]
fn only_dtls_1_2_is_offered() {
    let r = provider()
        .dtls_provider
        .new_dtls(&cert(), Instant::now(), DtlsVersion::Dtls13, None);
    let e = r.expect_err("refused").to_string();
    assert!(e.contains("DTLS 1.2 only"), "{e}");
}

#[test]
fn a_lost_client_hello_is_sent_again_when_the_timer_fires() {
    let mut client = started(true, Instant::now());
    client.handle_packet(&[]).unwrap();
    let (mut seen, mut first) = (Seen::default(), vec![]);
    drain(&mut *client, &mut seen, &mut first);
    assert_eq!(first.len(), 1, "one ClientHello");
    // The datagram is lost. The timer the instance reports is OpenSSL's (1 s at first);
    // waiting for it is waiting for the retransmission under test.
    let mut buf = vec![0u8; 4096];
    let due = match client.poll_output(&mut buf) {
        DtlsOutput::Timeout(t) => t,
        other => panic!("{other:?}"),
    };
    assert!(
        due <= Instant::now() + Duration::from_secs(2),
        "a handshake timer runs"
    );
    let again = retransmitted(&mut *client, &mut seen, due + Duration::from_secs(5));
    assert_eq!(again[0][0], 22, "a handshake record");
    assert_eq!(again[0].len(), first[0].len());
}

#[test]
fn a_lost_final_flight_is_resent_by_a_session_whose_buffers_were_released() {
    let now = Instant::now();
    let new = |active: bool| started(active, now);
    let (mut server, mut client) = (new(false), new(true));
    client.handle_packet(&[]).unwrap();
    let (mut ss, mut sc) = (Seen::default(), Seen::default());
    // Flights: ClientHello → server flight → client's final flight → server's CCS + Finished.
    let mut to_server = vec![];
    drain(&mut *client, &mut sc, &mut to_server);
    for round in 0.. {
        assert!(round < 10, "the server never opened");
        to_server
            .drain(..)
            .for_each(|d| server.handle_packet(&d).unwrap());
        let mut to_client = vec![];
        drain(&mut *server, &mut ss, &mut to_client);
        if ss.connected {
            // The server is open and its record buffers are gone; its final flight is lost.
            assert!(!to_client.is_empty());
            break;
        }
        to_client
            .drain(..)
            .for_each(|d| client.handle_packet(&d).unwrap());
        drain(&mut *client, &mut sc, &mut to_server);
    }
    assert!(!sc.connected);
    // The client's timer resends its final flight; the server must answer it again.
    let resent = retransmitted(&mut *client, &mut sc, now + Duration::from_secs(8));
    resent.iter().for_each(|d| server.handle_packet(d).unwrap());
    let mut answer = vec![];
    drain(&mut *server, &mut ss, &mut answer);
    assert!(
        settled(&*server),
        "the server had let its OpenSSL session go"
    );
    assert!(!answer.is_empty(), "the server resent its CCS and Finished");
    answer.iter().for_each(|d| client.handle_packet(d).unwrap());
    drain(&mut *client, &mut sc, &mut vec![]);
    assert!(sc.connected, "the client completed with the resent flight");
    assert_eq!(ss.keys.unwrap().0, sc.keys.unwrap().0);
}

/// Random datagrams, many shaped like DTLS records (right content types, version, epochs and
/// lengths), thrown at a server before, during and after its handshake: none may panic, and
/// the session must still finish its handshake and its close afterwards.
#[test]
fn random_datagrams_never_break_a_session() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // `kinds`: the content types records get. Epoch 0 is unauthenticated in every DTLS, so
    // a forged handshake record or alert may end a handshake in progress (cleanly); the
    // handshake is only required to survive the other kinds.
    let mut noise = |n: usize, kinds: std::ops::RangeInclusive<u8>| -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                let len = rng.random_range(0..300);
                let mut d: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                if len >= 13 && rng.random_bool(0.7) {
                    d[0] = rng.random_range(kinds.clone());
                    d[1..3].copy_from_slice(&[0xfe, 0xfd]);
                    d[3..5].copy_from_slice(&[0, rng.random_range(0..=1)]);
                    let body = if rng.random_bool(0.8) {
                        len - 13
                    } else {
                        rng.random_range(0..400)
                    };
                    d[11..13].copy_from_slice(&(body as u16).to_be_bytes());
                }
                d
            })
            .collect()
    };
    let now = Instant::now();
    let new = |active: bool| started(active, now);
    // Before the handshake: a fresh server takes noise (errors allowed, never a panic).
    for d in noise(500, 20..=23) {
        let mut s = new(false);
        if s.handle_packet(&d).is_err() {
            assert!(
                s.handle_packet(&d).is_err(),
                "a failed session stays failed"
            );
        }
        drain(&mut *s, &mut Seen::default(), &mut vec![]);
    }
    // During and after: noise between every flight, then a close.
    let (mut server, mut client) = (new(false), new(true));
    client.handle_packet(&[]).unwrap();
    let (mut ss, mut sc) = (Seen::default(), Seen::default());
    for _ in 0..10 {
        let (mut to_s, mut to_c) = (vec![], vec![]);
        drain(&mut *client, &mut sc, &mut to_s);
        drain(&mut *server, &mut ss, &mut to_c);
        if to_s.is_empty() && to_c.is_empty() {
            break;
        }
        for d in noise(50, 23..=23).iter().chain(&to_s) {
            server
                .handle_packet(d)
                .expect("application data noise is dropped");
        }
        to_c.iter().for_each(|d| client.handle_packet(d).unwrap());
    }
    assert!(
        ss.connected && sc.connected,
        "the handshake survived the noise"
    );
    assert!(settled(&*server));
    for d in noise(2000, 20..=23) {
        server
            .handle_packet(&d)
            .expect("a settled session drops what it cannot use");
    }
    let mut p = Pair {
        server,
        client,
        seen_server: ss,
        seen_client: sc,
        server_cert: cert(),
        client_cert: cert(),
    };
    assert!(!p.seen_server.close_notify);
    close_from(&mut p, false);
}

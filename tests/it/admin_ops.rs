//! The admin API acting on a channel's members: mute one (by identity), mute everyone on
//! stage but the moderators (their audio stops reaching listeners, and they cannot unmute
//! themselves), change a role, send a message from the app; bad bodies get reasons.

use crate::common::*;
use amphi_client::{AudioPeer, PeerOptions, Signal, Tone};
use serde_json::json;

/// The default roles plus a speaker that does not moderate (as in config/amphi.toml).
fn server() -> amphi::ServerHandle {
    start_with(|c| {
        let mut roles = amphi_core::roles::RoleTable::default_specs();
        let mut speaker = roles["host"].clone();
        speaker.moderate = false;
        speaker.stop = false;
        roles.insert("speaker".into(), speaker);
        c.roles = roles;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_mute_all_stops_a_speakers_audio() {
    let server = server();
    // The guest speaks; a listener hears it.
    let url = server.http_url();
    let gs = Signal::connect(&url, &token("guest", &["speaker"]))
        .await
        .unwrap();
    gs.join("ops2", "speaker").await.unwrap();
    let ls = Signal::connect(&url, &token("ear", &["audience"]))
        .await
        .unwrap();
    ls.join("ops2", "audience").await.unwrap();
    let ear = AudioPeer::start(&ls, "ops2", PeerOptions::default())
        .await
        .unwrap();
    let opts = PeerOptions {
        publish: Some(Box::new(Tone::new(440.0))),
        slots: 1,
        ..PeerOptions::default()
    };
    let voice = AudioPeer::start(&gs, "ops2", opts).await.unwrap();
    assert!(voice.wait_connected(WAIT).await && ear.wait_connected(WAIT).await);
    assert!(
        ear.wait_packets(25, WAIT).await,
        "the listener hears the guest"
    );

    // Every speaker, moderators too: the guest's audio stops reaching the listener.
    let (status, _) = admin_post(
        &server,
        "/api/channels/ops2/mute_all",
        json!({"spare_moderators": false}),
    )
    .await;
    assert_eq!(status, 200);
    let dropping = "amphi_packets_dropped_total{reason=\"muted\"}";
    wait_metric(&server, dropping, 25.0, WAIT).await;
    let heard = ear.stats().received_packets();
    wait_metric(&server, dropping, 50.0, WAIT).await;
    assert!(
        ear.stats().received_packets() <= heard + 1,
        "a muted speaker is still heard"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_mutes_set_roles_and_sends() {
    let server = server();
    let mut host = Client::as_(&server, "anchor", &["host"]).await;
    host.join("ops", "host").await;
    let mut speaker = Client::as_(&server, "guest", &["speaker"]).await;
    let speaker_id = participant(&speaker.join("ops", "speaker").await);
    let mut fan = Client::as_(&server, "fan", &["audience", "speaker"]).await;
    let fan_id = participant(&fan.join("ops", "audience").await);

    // Mute everyone on stage but the moderators: the guest, not the anchor (hosts moderate).
    let (status, reply) = admin_post(&server, "/api/channels/ops/mute_all", json!({})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["changed"], json!([speaker_id]), "{reply}");
    let ev = speaker.wait_event("mute_changed").await;
    assert_eq!(
        (ev["muted"].as_bool(), ev["admin"].as_bool()),
        (Some(true), Some(true))
    );
    speaker
        .err(
            "mute",
            json!({"channel": "ops", "muted": false}),
            "forbidden",
        )
        .await;
    // Mute and unmute one member by identity.
    let (status, reply) = admin_post(
        &server,
        "/api/channels/ops/mute",
        json!({"identity": "anchor"}),
    )
    .await;
    assert_eq!((status, &reply["muted"]), (200, &json!(true)), "{reply}");
    host.wait_event("mute_changed").await;
    let (status, _) = admin_post(
        &server,
        "/api/channels/ops/mute",
        json!({"identity": "anchor", "muted": false}),
    )
    .await;
    assert_eq!(status, 200);

    // A role from the app, without any member's permission.
    let (status, reply) = admin_post(
        &server,
        "/api/channels/ops/set_role",
        json!({"participant": fan_id, "role": "speaker"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let ev = fan.wait_event("role_changed").await;
    assert_eq!(ev["role"], "speaker");

    // A message from the app: `from` is null.
    let (status, _) = admin_post(
        &server,
        "/api/channels/ops/send",
        json!({"kind": "notice", "content": {"text": "closing in 5 minutes"}}),
    )
    .await;
    assert_eq!(status, 200);
    let msg = fan.wait_event("message").await;
    assert!(msg["from"].is_null(), "{msg}");
    assert_eq!(msg["content"]["text"], "closing in 5 minutes");

    // Bad requests say what is wrong.
    for (path, body, code, says) in [
        ("/api/channels/ops/mute", json!({}), 400, "exactly one"),
        (
            "/api/channels/ops/mute",
            json!({"identity": "nobody"}),
            404,
            "not in the channel",
        ),
        (
            "/api/channels/ops/set_role",
            json!({"identity": "fan", "role": "emperor"}),
            400,
            "emperor",
        ),
        ("/api/channels/ops/send", json!({"kind": ""}), 400, "kind"),
        ("/api/channels/nowhere/mute_all", json!({}), 404, "nowhere"),
    ] {
        let (status, reply) = admin_post(&server, path, body).await;
        assert_eq!(status, code, "{path}: {reply}");
        assert!(
            reply["message"].as_str().unwrap_or("").contains(says),
            "{path}: {reply}"
        );
    }
}

/// Runs the `amphi` command against `server`; its exit success, standard output and error.
pub async fn amphi(server: &amphi::ServerHandle, args: &[&str]) -> (bool, String, String) {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(["--dev".into(), "--url".into(), server.http_url()]);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_amphi"))
            .args(all)
            .env_remove("AMPHI_ADMIN_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_amphi_command_lists_shows_mutes_kicks_and_stops() {
    let server = server();
    let mut host = Client::as_(&server, "anchor", &["host"]).await;
    host.join("cli", "host").await;
    let mut guest = Client::as_(&server, "guest", &["speaker"]).await;
    guest.join("cli", "speaker").await;

    let (ok, out, err) = amphi(&server, &["channels", "list"]).await;
    assert!(ok, "{err}");
    let row = out.lines().find(|l| l.starts_with("cli ")).expect(&out);
    assert_eq!(row.split_whitespace().nth(1), Some("2"), "{out}");
    let (ok, out, _) = amphi(&server, &["channels", "show", "cli"]).await;
    assert!(ok && out.contains("\"guest\""), "{out}");

    let (ok, out, err) = amphi(&server, &["mute", "cli", "--all"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("\"changed\""), "{out}");
    assert_eq!(guest.wait_event("mute_changed").await["admin"], true);
    let (ok, _, err) = amphi(&server, &["mute", "cli", "--identity", "guest", "--unmute"]).await;
    assert!(ok, "{err}");

    let (ok, _, err) = amphi(&server, &["kick", "cli", "--identity", "guest"]).await;
    assert!(ok, "{err}");
    assert_eq!(guest.wait_event("left").await["reason"], "kicked");
    let (ok, _, err) = amphi(&server, &["kick", "cli", "--identity", "guest"]).await;
    assert!(
        !ok && err.contains("not_found") && err.contains("guest"),
        "{err}"
    );
    let (ok, _, err) = amphi(&server, &["mute", "cli"]).await;
    assert!(!ok && err.contains("--all"), "{err}");

    let (ok, _, err) = amphi(&server, &["channels", "stop", "cli"]).await;
    assert!(ok, "{err}");
    assert_eq!(host.wait_event("left").await["reason"], "channel_stopped");
    // A token without the admin grant is refused with the server's reason.
    let (ok, _, err) = amphi(
        &server,
        &["channels", "list", "--token", &token("anchor", &["host"])],
    )
    .await;
    assert!(!ok && err.contains("forbidden"), "{err}");
}

//! Every integration test in one binary: one link of the server instead of one per file,
//! and tests from different files share the two test threads. Each test starts its own
//! server (`common::start`, in-process, its own metrics) or the binary (`common::spawn_binary`).

mod common;

mod admin_calls;
mod admin_ops;
mod admission;
mod auth;
mod bad_input;
mod browser;
mod browser_page;
mod calls;
mod calls_media;
mod calls_video;
mod calls_webhooks;
mod channel_webhooks;
mod channels;
mod interop_webrtc;
mod join_cli;
mod kicks;
mod log_flood;
mod media;
mod panics;
mod pipelined;
mod reach;
mod resume;
mod scale;
mod shutdown;
mod steering;
mod streams;
mod swarm;

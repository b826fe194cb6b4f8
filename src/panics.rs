//! What a panic stops.
//!
//! A panic in one connection's code (its session: the frames it reads, the requests it
//! handles, the replies and events it writes) ends that connection only: the runtime catches
//! it, the session's memberships end as a disconnect (`participant_left`, reason
//! `disconnected`), everyone else carries on, and the error log says so.
//!
//! Anything else that panics (a channel's or a call's actor, a media worker, the call-log,
//! ban-store or webhook thread, an admin API handler) may leave state that many connections
//! share half-changed. Carrying on would serve wrong answers quietly, so the process logs the
//! panic and aborts; its supervisor (systemd's `Restart=`, Kubernetes) starts it again, and
//! the restart closes the calls left open in the call log (`server_restart`).
//!
//! `amphi serve` installs this policy ([`install`]); a server embedded in another program
//! (the tests) keeps that program's own panic handling.

use std::cell::Cell;

thread_local! {
    static CONNECTION_SCOPE: Cell<u32> = const { Cell::new(0) };
}

/// Marks the code of one connection: a panic while it is held ends that connection only.
pub struct ConnectionScope(());

impl ConnectionScope {
    pub fn enter() -> Self {
        CONNECTION_SCOPE.with(|d| d.set(d.get() + 1));
        ConnectionScope(())
    }
}

impl Drop for ConnectionScope {
    fn drop(&mut self) {
        CONNECTION_SCOPE.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

fn in_connection_code() -> bool {
    CONNECTION_SCOPE.with(Cell::get) > 0
}

/// Installs the policy for this process (see the module's documentation).
pub fn install() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        if in_connection_code() {
            tracing::error!(thread, panic = %info, "a connection's code panicked; that connection closes and the server carries on");
            return;
        }
        tracing::error!(thread, panic = %info, "shared state panicked; the server stops now so that its supervisor restarts it (the restart closes calls left open)");
        default(info);
        std::process::abort();
    }));
}

/// Test builds only (`fault-injection`): panics on purpose where the identity asks for it,
/// so that tests can show what a panic stops. Release builds have no such trigger.
#[cfg(feature = "fault-injection")]
pub fn injected(identity: &crate::ids::Identity, place: &str) {
    if identity.as_str() == format!("panic-in-{place}") {
        panic!("a panic injected in {place} code for {identity}");
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn injected(_: &crate::ids::Identity, _: &str) {}

//! A herd's threads yield to speaking peers.

/// Lowers the calling thread's scheduling priority (nice +10). A herd, and whatever else drives
/// listeners, stands for many listeners' devices; on a shared core it must not delay a
/// speaking peer's next frame, which a real speaker's device would send on time whatever its
/// audience does.
pub fn yield_to_speakers() {
    // SAFETY: plain system calls on the calling thread; raising one's own nice value needs
    // no privilege, and a failure only leaves the priority as it was.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

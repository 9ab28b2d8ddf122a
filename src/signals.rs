//! Termination signals, taken synchronously by the main thread.

use std::time::Duration;

pub struct Blocked(libc::sigset_t);

/// Blocks SIGINT and SIGTERM in the calling thread (and every thread it
/// starts afterwards), so that only `wait` receives them.
pub fn block_termination() -> Blocked {
    // SAFETY: sigset operations on a local set; pthread_sigmask changes this
    // thread's mask only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        Blocked(set)
    }
}

/// Waits for SIGINT or SIGTERM, or until `stop_early` says so (checked
/// every second). Returns what happened, for the log.
pub fn wait(blocked: &Blocked, stop_early: impl Fn() -> bool) -> &'static str {
    let timeout = libc::timespec {
        tv_sec: Duration::from_secs(1).as_secs() as _,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: the set and timeout are valid for the call; a null
        // siginfo pointer is allowed.
        let sig = unsafe { libc::sigtimedwait(&blocked.0, std::ptr::null_mut(), &timeout) };
        match sig {
            libc::SIGINT => return "SIGINT",
            libc::SIGTERM => return "SIGTERM",
            _ if stop_early() => return "a shard stopped",
            _ => {}
        }
    }
}

//! Termination and reload signals, taken synchronously by the main thread.

pub struct Blocked(libc::sigset_t);

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and every
/// thread it starts afterwards), so that only `wait` and `wait_or_reload`
/// receive them.
pub fn block_termination() -> Blocked {
    // SAFETY: sigset operations on a local set; pthread_sigmask changes this
    // thread's mask only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        Blocked(set)
    }
}

/// What the main thread was woken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Stop, for this reason (for the log).
    Stop(&'static str),
    /// SIGHUP: read the configuration again.
    Reload,
}

/// Waits for SIGINT or SIGTERM (stop), SIGHUP (reload), or until
/// `stop_early` says so (checked every [`POLL`]; it may do other periodic
/// work too, such as answering the control socket's reload requests).
pub fn wait_or_reload(blocked: &Blocked, stop_early: impl Fn() -> bool) -> Wake {
    loop {
        match next(blocked) {
            Some(libc::SIGINT) => return Wake::Stop("SIGINT"),
            Some(libc::SIGTERM) => return Wake::Stop("SIGTERM"),
            Some(libc::SIGHUP) => return Wake::Reload,
            _ if stop_early() => return Wake::Stop("a shard stopped"),
            _ => {}
        }
    }
}

/// How long the wait loops sleep between two calls of `stop_early`.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// The next blocked signal, or `None` after [`POLL`] without one.
fn next(blocked: &Blocked) -> Option<libc::c_int> {
    let timeout = libc::timespec {
        tv_sec: POLL.as_secs() as libc::time_t,
        tv_nsec: POLL.subsec_nanos() as libc::c_long,
    };
    // SAFETY: the set and timeout are valid for the call; a null siginfo
    // pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(&blocked.0, std::ptr::null_mut(), &timeout) };
    (sig > 0).then_some(sig)
}

/// Waits for SIGINT or SIGTERM, or until `stop_early` says so (checked
/// every [`POLL`]; a SIGHUP is ignored). Returns what happened, for the log.
pub fn wait(blocked: &Blocked, stop_early: impl Fn() -> bool) -> &'static str {
    loop {
        if let Wake::Stop(why) = wait_or_reload(blocked, &stop_early) {
            return why;
        }
    }
}

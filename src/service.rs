//! Life under a service manager and as a static binary.
//!
//! systemd (`Type=notify`, dist/systemd/rackboot.service): `READY=1` once
//! every socket is bound and the shards serve, `STOPPING=1` when a stop
//! signal arrives, `WATCHDOG=1` from the main thread's wait loop (it wakes
//! every `signals::POLL` and checks the shards) at half of `WatchdogSec=`. Outside
//! systemd (no `NOTIFY_SOCKET`, no `WATCHDOG_USEC`) every call does nothing.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Tells systemd the server is up; `status` is shown by `systemctl status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the server is stopping (draining running transfers).
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Keeps systemd's watchdog fed: call it often (the wait loop does); it
/// pings at most once per half watchdog interval.
pub fn watchdog() {
    static INTERVAL: OnceLock<Option<Duration>> = OnceLock::new();
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let Some(interval) = *INTERVAL.get_or_init(sd_notify::watchdog_enabled) else {
        return;
    };
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_some_and(|at| at.elapsed() < interval / 2) {
        return;
    }
    *last = Some(Instant::now());
    send(&[NotifyState::Watchdog]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd (NOTIFY_SOCKET): {e}");
    }
}

/// For the static binary (glibc linked with `crt-static`): user and group
/// names are looked up in /etc/passwd and /etc/group only. A static glibc
/// cannot load NSS modules safely: `passwd: files systemd` in
/// nsswitch.conf made a lookup of a user missing from /etc/passwd load
/// libnss_systemd.so and crash. The `files` service is built into glibc,
/// so nothing is loaded. Call it before the first lookup.
pub fn lookups_from_files() {
    unsafe extern "C" {
        // glibc: replace a database's nsswitch.conf line for this process.
        fn __nss_configure_lookup(
            db: *const libc::c_char,
            service_line: *const libc::c_char,
        ) -> libc::c_int;
    }
    for db in [c"passwd", c"group"] {
        // SAFETY: two NUL-terminated static strings; called at start-up,
        // before any thread or lookup.
        unsafe { __nss_configure_lookup(db.as_ptr(), c"files".as_ptr()) };
    }
}

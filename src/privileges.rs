//! Dropping root after the privileged ports are bound.

use std::ffi::CString;
use std::io;

/// Switches to `user` (and its primary group), dropping supplementary
/// groups. Fails unless every step succeeds.
pub fn drop_to(user: &str) -> io::Result<()> {
    let name = CString::new(user)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad user name"))?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we
    // read uid/gid immediately, before any other passwd call.
    let (uid, gid) = unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such user"));
        }
        ((*pw).pw_uid, (*pw).pw_gid)
    };
    // SAFETY: plain credential syscalls; order matters (groups and gid
    // first, while we still may).
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::setuid(0) == 0 {
            return Err(io::Error::other(
                "could regain root after dropping privileges",
            ));
        }
    }
    tracing::info!("dropped privileges to {user} (uid {uid}, gid {gid})");
    Ok(())
}

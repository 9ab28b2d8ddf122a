//! Least privilege once every socket is bound.
//!
//! Started as root, the server becomes `--user` if given, else the user
//! `rackboot` if it exists, else `nobody`, else the numeric uid/gid 65534
//! (a container built `FROM scratch` has no /etc/passwd). It keeps one
//! capability, CAP_LEASE, so that read leases still protect boot files it
//! does not own (see `files::lease`); every other capability goes, from
//! the bounding set too, the inheritable and ambient sets stay empty, and
//! `no_new_privs` is set. `--user root` keeps root, with one warning.
//!
//! Credentials and capabilities belong to a thread and are inherited by the
//! threads it starts: this runs while the process still has one thread.

use std::io;

/// `nobody`'s ids on most systems; the last resort without /etc/passwd.
const NOBODY_ID: u32 = 65534;
/// CAP_LEASE (capability.h): leases on files we do not own.
const CAP_LEASE: u32 = 28;

/// Whom to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// Called in `serve` after every socket is bound and before any thread
/// starts: drops root as described in the module documentation. `user` is
/// `--user` (or the file's `user`).
pub fn after_bind(user: Option<&str>) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let named = |u: &str| resolve(u).map_err(|e| format!("--user {u}: {e}"));
    if euid != 0 {
        // Not root: nothing to drop; switching users is root's to do.
        return match user.map(named).transpose()? {
            Some(id) if id.uid != euid => Err(format!(
                "--user {}: only root can switch users (running as uid {euid}); \
                 start as root or leave --user out",
                id.name
            )),
            _ => Ok(()),
        };
    }
    let target = match user {
        Some(u) => named(u)?,
        None => default_user(),
    };
    if target.uid == 0 {
        tracing::warn!(
            "--user {}: keeping root after binding; every request is served with full privileges \
             (leave --user out to run as rackboot or nobody)",
            target.name
        );
        return Ok(());
    }
    drop_to(&target).map_err(|e| format!("dropping privileges to {}: {e}", target.name))
}

/// `rackboot` if it exists, else `nobody`, else 65534:65534.
pub fn default_user() -> Identity {
    ["rackboot", "nobody"]
        .into_iter()
        .find_map(|name| lookup(name).ok().flatten())
        .unwrap_or(Identity {
            name: NOBODY_ID.to_string(),
            uid: NOBODY_ID,
            gid: NOBODY_ID,
        })
}

/// `NAME`, `UID` or `UID:GID`. A number that names no user gets the gid
/// of the same number (as 65534 does without /etc/passwd).
pub fn resolve(user: &str) -> io::Result<Identity> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
    if let Some((uid, gid)) = user.split_once(':') {
        let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse()) else {
            return Err(invalid("the forms are NAME, UID and UID:GID"));
        };
        return Ok(Identity {
            name: user.to_string(),
            uid,
            gid,
        });
    }
    if let Ok(uid) = user.parse::<u32>() {
        let gid = lookup_uid(uid).map_or(uid, |id| id.gid);
        return Ok(Identity {
            name: user.to_string(),
            uid,
            gid,
        });
    }
    lookup(user)?.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such user"))
}

/// The /etc/passwd entry of `name`. Read directly, not through NSS: the
/// binary is static and may run where no NSS module can be loaded.
fn lookup(name: &str) -> io::Result<Option<Identity>> {
    Ok(passwd_file().into_iter().find(|id| id.name == name))
}

fn lookup_uid(uid: u32) -> Option<Identity> {
    passwd_file().into_iter().find(|id| id.uid == uid)
}

/// The entries of /etc/passwd (none when it is missing).
fn passwd_file() -> Vec<Identity> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let _password = f.next()?;
            Some(Identity {
                name: name.to_string(),
                uid: f.next()?.parse().ok()?,
                gid: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn capset(keep: u64) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |i: u32| (keep >> (32 * i)) as u32;
    let data = [0, 1].map(|i| CapData {
        effective: word(i),
        permitted: word(i),
        inheritable: 0,
    });
    // SAFETY: capset reads the header and two data structs we own.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This thread's (permitted, effective) capability sets.
fn capget() -> io::Result<(u64, u64)> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two data structs we own.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |f: fn(&CapData) -> u32| f(&data[0]) as u64 | (f(&data[1]) as u64) << 32;
    Ok((join(|d| d.permitted), join(|d| d.effective)))
}

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe {
        libc::prctl(
            option,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How many threads this process has (credentials are per thread).
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

/// Becomes `id` (its primary group, no supplementary groups), keeping
/// CAP_LEASE where the process has it. Fails unless every step succeeds.
pub fn drop_to(id: &Identity) -> io::Result<()> {
    // A thread that just ended (the io_uring probe) may linger in /proc
    // for a moment after it was joined.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while threads() > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    if threads() > 1 {
        return Err(io::Error::other(
            "threads already running; privileges must be dropped before any starts",
        ));
    }
    let lease = 1u64 << CAP_LEASE;
    let (permitted, _) = capget()?;
    // Keep the permitted set across setuid (effective is emptied by it).
    prctl(libc::PR_SET_KEEPCAPS, 1)?;
    // The bounding set: nothing but CAP_LEASE can ever come back. Needs
    // CAP_SETPCAP, which a container may have taken away: then the empty
    // permitted set below is what holds.
    for cap in 0..64 {
        if cap == CAP_LEASE {
            continue;
        }
        match prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break, // past the last one
            Err(e) => {
                tracing::debug!("bounding set kept (PR_CAPBSET_DROP: {e})");
                break;
            }
        }
    }
    // SAFETY: plain credential syscalls (glibc applies them to every
    // thread); order matters: groups and gid first, while we still may.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(id.gid) != 0
            || libc::setuid(id.uid) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    let kept = permitted & lease;
    capset(kept)?;
    prctl(libc::PR_SET_KEEPCAPS, 0)?;
    // Ambient capabilities (Linux 4.3+): none. EINVAL on older kernels,
    // which have none to clear.
    if let Err(e) = prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    ) && e.raw_os_error() != Some(libc::EINVAL)
    {
        return Err(e);
    }
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
    // SAFETY: as above; this one must fail.
    if unsafe { libc::setuid(0) } == 0 {
        return Err(io::Error::other(
            "could regain root after dropping privileges",
        ));
    }
    let (permitted, effective) = capget()?;
    if permitted & !lease != 0 || effective & !lease != 0 {
        return Err(io::Error::other(format!(
            "capabilities left after the drop: permitted {permitted:#x}, effective {effective:#x}"
        )));
    }
    let caps = if effective & lease != 0 {
        "CAP_LEASE"
    } else {
        "none"
    };
    tracing::info!(
        user = %id.name,
        uid = id.uid,
        gid = id.gid,
        capabilities = caps,
        "dropped privileges to {} (uid {}, gid {}), keeping capabilities: {caps}",
        id.name,
        id.uid,
        id.gid
    );
    if kept == 0 {
        tracing::warn!(
            "CAP_LEASE is not available (a container without it?): files not owned by uid {} \
             are served from private copies instead of leased mappings",
            id.uid
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_forms() {
        let id = resolve("65534:65533").unwrap();
        assert_eq!((id.uid, id.gid), (65534, 65533));
        let id = resolve("4242").unwrap();
        assert_eq!(id.uid, 4242);
        assert!(resolve("1:x").is_err());
        assert!(resolve("no-such-user-rackboot-test").is_err());
        assert_eq!(resolve("root").unwrap().uid, 0);
    }
}

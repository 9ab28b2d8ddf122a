//! The watcher: inotify on the directory (not its files: editors and
//! ConfigMaps replace files by rename), a debounce, then the whole
//! directory read again and the policy rebuilt.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Quiet time after the last event before the directory is read again.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A stream of events is read at the latest after this, so that a change
/// applies within a second even while something keeps writing.
const DEBOUNCE_MAX: Duration = Duration::from_millis(400);

/// What changes the directory's contents, including renames over and out
/// of it and symlink swaps (a ConfigMap's `..data`), and the directory
/// itself going away.
const WATCH_MASK: u32 = libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_CLOSE_WRITE
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// An inotify instance watching one directory.
struct Inotify {
    fd: OwnedFd,
}

/// What one read of the events said.
#[derive(Default)]
struct Events {
    any: bool,
    /// The watch is gone (the directory was removed or moved away).
    lost: bool,
}

impl Inotify {
    fn new() -> io::Result<Inotify> {
        // SAFETY: plain syscall; the descriptor is owned from here on.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        Ok(Inotify {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn add_watch(&self, dir: &Path) -> io::Result<()> {
        let path = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the path"))?;
        // SAFETY: a valid descriptor and a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), WATCH_MASK) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` (`None`: forever) for events; whether any came.
    fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
        loop {
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n >= 0 {
                return Ok(n > 0);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Reads every pending event.
    fn drain(&self) -> io::Result<Events> {
        let mut events = Events::default();
        // Aligned for `inotify_event`; room for many events with names.
        let mut buf = [0u64; 1024];
        loop {
            // SAFETY: reading into our own buffer, within its size.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    std::mem::size_of_val(&buf),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(events),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            let n = n as usize;
            if n == 0 {
                return Ok(events);
            }
            // SAFETY: the buffer is u64-aligned and initialised.
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
            let header = std::mem::size_of::<libc::inotify_event>();
            let mut at = 0;
            while at + header <= n {
                let mask = u32::from_ne_bytes(bytes[at + 4..at + 8].try_into().unwrap());
                let len = u32::from_ne_bytes(bytes[at + 12..at + 16].try_into().unwrap());
                events.any = true;
                if mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
                    events.lost = true;
                }
                at += header + len as usize;
            }
        }
    }
}

/// Watches `dir` on a thread of its own and calls `changed` once the
/// directory has been quiet for ~100 ms after a change (at the latest
/// 400 ms after the first event of a burst), and once more whenever the
/// directory comes back after being removed. The thread ends when
/// `changed` returns false.
pub fn watch(
    dir: PathBuf,
    mut changed: impl FnMut() -> bool + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let inotify = Inotify::new()?;
    inotify.add_watch(&dir)?;
    std::thread::Builder::new()
        .name("hosts-dir".into())
        .spawn(move || {
            let mut watching = true;
            loop {
                if !watching {
                    // Gone: look for it again every second.
                    std::thread::sleep(Duration::from_secs(1));
                    if inotify.add_watch(&dir).is_err() {
                        continue;
                    }
                    tracing::info!("hosts-dir {}: back, watching it again", dir.display());
                    watching = true;
                    if !changed() {
                        return;
                    }
                    continue;
                }
                match inotify.wait(None).and_then(|_| inotify.drain()) {
                    Ok(events) if !events.any => continue,
                    Ok(events) => watching = !events.lost,
                    Err(e) => {
                        tracing::error!("hosts-dir {}: inotify: {e}", dir.display());
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                }
                let first = Instant::now();
                while watching && first.elapsed() < DEBOUNCE_MAX {
                    match inotify.wait(Some(DEBOUNCE)) {
                        Ok(true) => match inotify.drain() {
                            Ok(events) => watching = !events.lost,
                            Err(_) => break,
                        },
                        _ => break,
                    }
                }
                if !watching {
                    tracing::error!(
                        "hosts-dir {}: the directory was removed or moved; the rules stay as they were until it is back",
                        dir.display()
                    );
                }
                if !changed() {
                    return;
                }
            }
        })
}

//! Read leases (`fcntl(F_SETLEASE, F_RDLCK)`) on served files.
//!
//! A mapped file rewritten in place would reach clients as a mix of old and
//! new bytes, and a truncated one would fault. With a read lease, the kernel
//! holds any writer's `open(O_WRONLY)` or `truncate` and signals us first
//! (up to `/proc/sys/fs/lease-break-time`). The watcher thread then revokes
//! the file: shards stop starting sends from it (running transfers end with
//! an ERROR), the watcher waits until sends already handed to the kernel
//! have completed, and only then releases the lease and lets the writer in.
//! So no byte of the new content ever reaches an old transfer.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

// Not exported by the libc crate for every target.
const F_SETSIG: libc::c_int = 10;
const F_SETOWN_EX: libc::c_int = 15;
const F_OWNER_TID: libc::c_int = 0;
#[repr(C)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

/// How long the watcher waits for in-flight sends before letting a writer in.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Whether a file may still be sent from, and how many sends each shard has
/// in the kernel right now. Shared by the file and the watcher.
#[derive(Debug)]
pub struct SendGate {
    revoked: AtomicBool,
    in_flight: Box<[CachePadded<AtomicU32>]>,
}

impl SendGate {
    pub fn new(shards: usize) -> SendGate {
        SendGate {
            revoked: AtomicBool::new(false),
            in_flight: (0..shards.max(1))
                .map(|_| CachePadded::new(AtomicU32::new(0)))
                .collect(),
        }
    }

    /// Announces a send from shard `shard`; false once the file is revoked.
    /// Increment first, then check: with the watcher's store-then-read this
    /// guarantees that either we see the revocation or it sees our send.
    pub fn begin(&self, shard: usize) -> bool {
        let counter = &self.in_flight[shard % self.in_flight.len()];
        counter.fetch_add(1, Ordering::SeqCst);
        if self.revoked.load(Ordering::SeqCst) {
            counter.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// The kernel has finished with a send begun on `shard`.
    pub fn end(&self, shard: usize) {
        self.in_flight[shard % self.in_flight.len()].fetch_sub(1, Ordering::SeqCst);
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::SeqCst)
    }

    /// Stops new sends and waits (bounded) for those in the kernel.
    pub fn revoke_and_drain(&self) -> bool {
        self.revoked.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + DRAIN_LIMIT;
        while self.in_flight.iter().any(|c| c.load(Ordering::SeqCst) != 0) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        true
    }
}

/// The process-wide lease watcher thread.
pub struct Watcher {
    tid: libc::pid_t,
    signal: libc::c_int,
    gates: Mutex<HashMap<RawFd, Arc<SendGate>>>,
}

static WATCHER: OnceLock<Option<Arc<Watcher>>> = OnceLock::new();

impl Watcher {
    /// The watcher, started on first use; `None` where signalfd is missing.
    pub fn get() -> Option<Arc<Watcher>> {
        WATCHER
            .get_or_init(|| {
                Watcher::start()
                    .map_err(|e| tracing::warn!("file leases unavailable: {e}"))
                    .ok()
            })
            .clone()
    }

    fn start() -> io::Result<Arc<Watcher>> {
        let signal = libc::SIGRTMIN() + 1;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("lease-watcher".into())
            .spawn(move || {
                match open_signalfd(signal) {
                    Ok(sfd) => {
                        // SAFETY: gettid has no preconditions.
                        let tid = unsafe { libc::gettid() };
                        let watcher = Arc::new(Watcher {
                            tid,
                            signal,
                            gates: Mutex::new(HashMap::new()),
                        });
                        let _ = tx.send(Ok(watcher.clone()));
                        watcher.run(sfd);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        rx.recv()
            .map_err(|_| io::Error::other("lease watcher died"))?
    }

    /// Puts a read lease on `file`, reported to this thread when broken.
    /// Fails when the file is open for writing, not ours, or on a file
    /// system without leases: the caller then serves a private copy.
    pub fn lease(&self, file: &File, gate: Arc<SendGate>) -> io::Result<()> {
        let fd = file.as_raw_fd();
        let owner = FOwnerEx {
            kind: F_OWNER_TID,
            pid: self.tid,
        };
        // SAFETY: plain fcntl calls on a descriptor we own; `owner` outlives
        // the F_SETOWN_EX call that reads it.
        unsafe {
            if libc::fcntl(fd, F_SETSIG, self.signal) < 0
                || libc::fcntl(fd, F_SETOWN_EX, &owner as *const FOwnerEx) < 0
            {
                return Err(io::Error::last_os_error());
            }
            self.gates
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(fd, gate);
            if libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) < 0 {
                let err = io::Error::last_os_error();
                self.forget(fd);
                return Err(err);
            }
        }
        Ok(())
    }

    /// Called before the leased descriptor is closed.
    pub fn forget(&self, fd: RawFd) {
        self.gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fd);
    }

    fn run(&self, sfd: File) {
        use std::io::Read;
        let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        let mut sfd = sfd;
        loop {
            if sfd.read_exact(&mut info).is_err() {
                continue;
            }
            // SAFETY: signalfd_siginfo is plain old data of exactly this size.
            let info: libc::signalfd_siginfo =
                unsafe { std::ptr::read_unaligned(info.as_ptr().cast()) };
            let fd = info.ssi_fd;
            let gate = self
                .gates
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&fd);
            if let Some(gate) = gate {
                let drained = gate.revoke_and_drain();
                if !drained {
                    tracing::warn!("a shard kept sending from a changed file for {DRAIN_LIMIT:?}");
                }
                tracing::info!(
                    "served file is being changed: running transfers of it end, new ones see the new file"
                );
            }
            // SAFETY: releasing a lease on a descriptor that may already be
            // closed is harmless (EBADF).
            unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
        }
    }
}

fn open_signalfd(signal: libc::c_int) -> io::Result<File> {
    use std::os::fd::FromRawFd;
    // SAFETY: sigset manipulation on a local set; pthread_sigmask affects
    // only this thread; signalfd returns a new descriptor we take ownership of.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(fd))
    }
}

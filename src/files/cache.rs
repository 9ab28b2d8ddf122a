//! Files mapped once and shared by every transfer on every shard.
//!
//! An entry is keyed by device and inode and remembers size and change
//! times: a file replaced by rename is a new inode, so new transfers get the
//! new file while running ones keep the old mapping alive through their
//! `Arc`. A file changed in place is handled by its lease (see `lease`);
//! where no lease can be had, the file is served from a private copy, so
//! nothing can change or truncate the bytes under a transfer.

use std::collections::HashMap;
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use super::lease::{SendGate, Watcher};
use super::linger::Lingering;
use super::remap::{Client, Naming};
use super::resolve::{ResolveError, Root};
use crate::published::Published;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Identity {
    fn of(file: &File) -> std::io::Result<Identity> {
        let m = file.metadata()?;
        Ok(Identity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }
}

#[derive(Debug)]
enum Contents {
    Empty,
    /// Shared page-cache pages, protected by a lease.
    Mapped(memmap2::Mmap),
    /// A private copy, for files we could not lease.
    Copied(Box<[u8]>),
}

/// One version of one file, as served.
#[derive(Debug)]
pub struct ServedFile {
    name: String,
    identity: Identity,
    contents: Contents,
    gate: Arc<SendGate>,
    /// Holds the lease; closed (after unregistering) on drop.
    leased: Option<File>,
}

impl ServedFile {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn len(&self) -> u64 {
        self.identity.size
    }

    pub fn is_empty(&self) -> bool {
        self.identity.size == 0
    }

    /// What identifies this version to HTTP validators: inode, size and
    /// modification time (ns since the epoch), and the time itself.
    pub fn version_stamp(&self) -> (u64, u64, i128, std::time::SystemTime) {
        let ns = self.identity.mtime_ns;
        let modified = if ns >= 0 {
            std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns as u64)
        } else {
            std::time::UNIX_EPOCH
        };
        (self.identity.ino, self.identity.size, ns, modified)
    }

    /// Whether this file is served from a mapping (zero-copy) or a copy.
    pub fn is_mapped(&self) -> bool {
        matches!(self.contents, Contents::Mapped(_))
    }

    /// The bytes at `offset..offset+len`, clamped to the file. For the
    /// kernel to read during a send: callers bracket the send with
    /// `gate().begin()` / `end()` and never read the bytes themselves.
    pub fn slice(&self, offset: u64, len: usize) -> &[u8] {
        let bytes: &[u8] = match &self.contents {
            Contents::Empty => &[],
            Contents::Mapped(m) => m,
            Contents::Copied(c) => c,
        };
        let start = (offset.min(bytes.len() as u64)) as usize;
        let end = start.saturating_add(len).min(bytes.len());
        &bytes[start..end]
    }

    /// The whole file, read through the descriptor (never from the
    /// mapping, which a truncate would turn into SIGBUS). None when it
    /// changed while being read.
    fn read_whole(&self) -> Option<Vec<u8>> {
        match (&self.contents, &self.leased) {
            (Contents::Empty, _) => Some(Vec::new()),
            (Contents::Copied(bytes), _) => Some(bytes.to_vec()),
            (Contents::Mapped(_), Some(file)) => read_stable(file, self.identity).map(Vec::from),
            (Contents::Mapped(_), None) => None,
        }
    }

    pub fn gate(&self) -> &SendGate {
        &self.gate
    }

    /// Whether the file still is the version mapped (size and mtime, by
    /// fstat on the descriptor we hold). A writer updates these before its
    /// data lands, so checking before the last block keeps a transfer from
    /// completing with changed bytes should a write ever get past the
    /// lease. Private copies cannot change.
    pub fn unchanged(&self) -> bool {
        // Size and mtime only: a rename over the file unlinks this inode,
        // which changes its ctime but not its bytes.
        match &self.leased {
            Some(file) => Identity::of(file).is_ok_and(|now| {
                now.size == self.identity.size && now.mtime_ns == self.identity.mtime_ns
            }),
            None => true,
        }
    }
}

impl Drop for ServedFile {
    fn drop(&mut self) {
        if let (Some(file), Some(w)) = (&self.leased, Watcher::get()) {
            w.forget(file.as_raw_fd());
        }
    }
}

/// The shared cache. Locked only when a request opens a file, never on
/// the data path.
#[derive(Debug)]
pub struct FileCache {
    root: Root,
    /// Remap rules and per-client roots, applied before resolution;
    /// published so a reload can replace them.
    naming: Published<Naming>,
    shards: usize,
    entries: Mutex<HashMap<(u64, u64), Weak<ServedFile>>>,
    /// Netascii conversions, one per file version (the version converted
    /// is the identity stored beside it), shared by concurrent reads.
    netascii: Mutex<HashMap<(u64, u64), Converted>>,
    /// Mapped files kept a while after their last transfer (see `linger`).
    lingering: Mutex<Lingering>,
}

/// A netascii conversion and the version of the file it was made from.
type Converted = (Identity, Weak<ServedFile>);

/// Largest file a netascii read converts: the conversion is a private copy
/// (up to twice the size), and such reads are for configurations and
/// quick tests, not kernels.
pub const NETASCII_MAX_BYTES: u64 = 64 << 20;

impl FileCache {
    pub fn new(root: Root, shards: usize) -> FileCache {
        FileCache {
            root,
            naming: Published::default(),
            shards,
            entries: Mutex::new(HashMap::new()),
            netascii: Mutex::new(HashMap::new()),
            lingering: Mutex::new(Lingering::default()),
        }
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Rewrites requested names with `naming` (remap rules, per-client
    /// roots) before they are resolved.
    pub fn with_naming(self, naming: Naming) -> FileCache {
        self.naming.publish(naming);
        self
    }

    /// Replaces the naming rules for requests from now on (a reload).
    pub fn set_naming(&self, naming: Naming) {
        self.naming.publish(naming);
    }

    /// A page made in memory (the metrics page over HTTP), served as a
    /// private copy; a fresh version (time stamp) each time.
    pub fn in_memory(&self, name: &str, bytes: Vec<u8>) -> Arc<ServedFile> {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        Arc::new(ServedFile {
            name: name.to_owned(),
            identity: Identity {
                dev: 0,
                ino: 0,
                size: bytes.len() as u64,
                mtime_ns: now_ns,
                ctime_ns: now_ns,
            },
            contents: if bytes.is_empty() {
                Contents::Empty
            } else {
                Contents::Copied(bytes.into_boxed_slice())
            },
            gate: Arc::new(SendGate::new(self.shards)),
            leased: None,
        })
    }

    /// Files held for clients now (netascii conversions included) and the
    /// bytes of them in memory, mapped or copied: for metrics.
    pub fn usage(&self) -> (u64, u64) {
        let mut files = 0;
        let mut bytes = 0;
        let mut count = |file: Option<Arc<ServedFile>>| {
            if let Some(file) = file {
                files += 1;
                bytes += file.len();
            }
        };
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.values().for_each(|w| count(w.upgrade()));
        drop(entries);
        let converted = self.netascii.lock().unwrap_or_else(|e| e.into_inner());
        converted.values().for_each(|(_, w)| count(w.upgrade()));
        (files, bytes)
    }

    /// Opens what `client` asked for: [`FileCache::open`] of the name after
    /// the remap rules, in the client's own directory when there is one.
    pub fn open_for(
        &self,
        requested: &[u8],
        client: IpAddr,
    ) -> Result<Arc<ServedFile>, ResolveError> {
        match self.name_for(requested, client)? {
            Some(name) => self.open(&name),
            None => self.open(requested),
        }
    }

    /// [`FileCache::open_netascii`] of what `client` asked for.
    pub fn open_netascii_for(
        &self,
        requested: &[u8],
        client: IpAddr,
    ) -> Result<Arc<ServedFile>, ResolveError> {
        match self.name_for(requested, client)? {
            Some(name) => self.open_netascii(&name),
            None => self.open_netascii(requested),
        }
    }

    /// The name to resolve for `client`; `None` when no rule applies.
    fn name_for(&self, requested: &[u8], client: IpAddr) -> Result<Option<Vec<u8>>, ResolveError> {
        let naming = self.naming.snapshot();
        if naming.is_identity() {
            return Ok(None);
        }
        let client = Client {
            ip: client,
            mac: if naming.wants_mac() {
                crate::net::neighbours::mac_of(client)
            } else {
                None
            },
        };
        let mut name = naming
            .remap(requested, &client)
            .map_err(|_| ResolveError::Refused)?;
        if let Some(dir) = naming.client_dir(&client)
            && self.root.has_dir(&dir)
        {
            let mut inside = dir.into_bytes();
            inside.push(b'/');
            inside.extend_from_slice(&name);
            name = inside;
        }
        Ok(Some(name))
    }

    /// Opens a requested file, sharing the current version when cached.
    pub fn open(&self, requested: &[u8]) -> Result<Arc<ServedFile>, ResolveError> {
        let (file, name) = self.root.open_file(requested)?;
        let identity = Identity::of(&file).map_err(|_| ResolveError::NotFound)?;
        let key = (identity.dev, identity.ino);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let served = match entries.get(&key).and_then(Weak::upgrade) {
            Some(existing) if existing.identity == identity && !existing.gate.is_revoked() => {
                existing
            }
            _ => {
                let served = Arc::new(self.load(file, name, identity)?);
                prefault(&served);
                if entries.len() > 1024 {
                    entries.retain(|_, w| w.strong_count() > 0);
                }
                entries.insert(key, Arc::downgrade(&served));
                served
            }
        };
        drop(entries);
        if served.is_mapped() {
            let evicted = self.lingering().touch(&served, Instant::now());
            drop(evicted); // unmapped here, outside the lock
        }
        Ok(served)
    }

    /// Lets go of mapped files unused for `linger::LINGER` (or revoked);
    /// the shards call it about once a second.
    pub fn expire_lingering(&self, now: Instant) {
        let gone = self.lingering().expire(now);
        drop(gone); // unmapped here, outside the lock
    }

    /// How many mapped files are kept beyond their transfers.
    pub fn lingering_files(&self) -> usize {
        self.lingering().len()
    }

    fn lingering(&self) -> std::sync::MutexGuard<'_, Lingering> {
        self.lingering.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a requested file for a netascii read: its current version,
    /// converted (see `tftp::netascii`) once and shared while in use.
    pub fn open_netascii(&self, requested: &[u8]) -> Result<Arc<ServedFile>, ResolveError> {
        let original = self.open(requested)?;
        if original.len() > NETASCII_MAX_BYTES {
            return Err(ResolveError::TooLargeForNetascii);
        }
        let key = (original.identity.dev, original.identity.ino);
        let mut converted = self.netascii.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((version, weak)) = converted.get(&key)
            && *version == original.identity
            && let Some(existing) = weak.upgrade()
        {
            return Ok(existing);
        }
        let bytes = original.read_whole().ok_or(ResolveError::Busy)?;
        let wire = crate::tftp::netascii::encode(&bytes);
        let served = Arc::new(ServedFile {
            name: original.name.clone(),
            identity: Identity {
                size: wire.len() as u64,
                ..original.identity
            },
            contents: if wire.is_empty() {
                Contents::Empty
            } else {
                Contents::Copied(wire.into_boxed_slice())
            },
            gate: Arc::new(SendGate::new(self.shards)),
            leased: None,
        });
        converted.retain(|_, (_, w)| w.strong_count() > 0);
        converted.insert(key, (original.identity, Arc::downgrade(&served)));
        Ok(served)
    }

    fn load(
        &self,
        file: File,
        name: String,
        identity: Identity,
    ) -> Result<ServedFile, ResolveError> {
        let gate = Arc::new(SendGate::new(self.shards));
        if identity.size == 0 {
            return Ok(ServedFile {
                name,
                identity,
                contents: Contents::Empty,
                gate,
                leased: None,
            });
        }
        if let Some(watcher) = Watcher::get() {
            let leased = watcher.lease(&file, gate.clone());
            // EAGAIN: someone has the file open for writing right now. A
            // copy taken now could hold half of their write (one write(2)
            // updates the times before its data): ask the client to retry.
            if leased
                .as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::EAGAIN))
            {
                tracing::info!(file = %name, "file is open for writing: request answered busy");
                return Err(ResolveError::Busy);
            }
            if leased.is_ok() {
                // SAFETY: the lease guarantees no one writes or truncates the
                // file without our consent (see `lease`); the mapping is only
                // handed to the kernel for sends, never read by us.
                if let Ok(map) = unsafe { memmap2::Mmap::map(&file) }
                    && Identity::of(&file).ok() == Some(identity)
                {
                    return Ok(ServedFile {
                        name,
                        identity,
                        contents: Contents::Mapped(map),
                        gate,
                        leased: Some(file),
                    });
                }
                watcher.forget(file.as_raw_fd());
            } else {
                tracing::debug!(file = %name, "no lease on file: serving a private copy");
            }
        }
        let copy = read_stable(&file, identity).ok_or(ResolveError::Busy)?;
        Ok(ServedFile {
            name,
            identity,
            contents: Contents::Copied(copy),
            gate,
            leased: None,
        })
    }
}

/// Files up to this size are pre-faulted at once; larger ones by a thread.
const PREFAULT_INLINE: u64 = 1 << 20;
const PREFAULT_CHUNK: usize = 8 << 20;

/// Maps the file's pages into our page tables ahead of the sends.
///
/// The kernel copies each DATA payload out of the mapping; a page not yet
/// in our page tables costs a minor fault on that copy, 16 of them per
/// 64 KB block, which made large-block transfers of a freshly mapped file
/// slower than a server that read()s into a buffer. MADV_POPULATE_READ is
/// a system call: on a truncated range it fails instead of raising SIGBUS.
/// Large files are populated in the background, chunk by chunk, holding
/// the file only while a chunk is done, and stopping once it is revoked or
/// no longer served.
fn prefault(served: &Arc<ServedFile>) {
    let Contents::Mapped(map) = &served.contents else {
        return;
    };
    if served.len() <= PREFAULT_INLINE {
        let _ = map.advise(memmap2::Advice::PopulateRead);
        return;
    }
    let _ = map.advise(memmap2::Advice::Sequential);
    let weak = Arc::downgrade(served);
    let spawned = std::thread::Builder::new()
        .name("prefault".into())
        .spawn(move || {
            let mut offset = 0usize;
            loop {
                let Some(file) = weak.upgrade() else { return };
                let Contents::Mapped(map) = &file.contents else {
                    return;
                };
                if offset >= map.len() || file.gate.is_revoked() {
                    return;
                }
                let len = PREFAULT_CHUNK.min(map.len() - offset);
                if map
                    .advise_range(memmap2::Advice::PopulateRead, offset, len)
                    .is_err()
                {
                    return; // kernel without MADV_POPULATE_READ, or truncated
                }
                offset += len;
            }
        });
    if let Err(e) = spawned {
        tracing::debug!("no prefault thread: {e}");
    }
}

/// Reads the whole file, provided it did not change while being read:
/// the same bytes twice and the same size and times around both reads (the
/// times alone can miss a write in progress). Only for files that cannot be
/// leased, once per version.
fn read_stable(file: &File, identity: Identity) -> Option<Box<[u8]>> {
    use std::os::unix::fs::FileExt;
    let read = || {
        let mut buf = vec![0u8; identity.size as usize];
        file.read_exact_at(&mut buf, 0).ok()?;
        let mut probe = [0u8; 1];
        let at_end = file.read_at(&mut probe, identity.size).ok()? == 0;
        at_end.then_some(buf)
    };
    let first = read()?;
    let second = read()?;
    let unchanged = first == second && Identity::of(file).ok() == Some(identity);
    unchanged.then(|| first.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::RootOptions;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    fn cache_with(name: &str, bytes: &[u8]) -> (tempfile::TempDir, FileCache) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), bytes).unwrap();
        let root = Root::open(dir.path(), RootOptions::default()).unwrap();
        (dir, FileCache::new(root, 2))
    }

    #[test]
    fn netascii_is_converted_once_per_version_and_bounded() {
        let (dir, cache) = cache_with("cfg", b"a\nb\r");
        let a = cache.open_netascii(b"cfg").unwrap();
        assert_eq!(a.slice(0, 100), b"a\r\nb\r\0");
        assert_eq!(a.len(), 6, "tsize counts the bytes sent");
        let b = cache.open_netascii(b"cfg").unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one conversion shared");
        assert_eq!(
            cache.open(b"cfg").unwrap().slice(0, 100),
            b"a\nb\r",
            "octet unchanged"
        );
        std::fs::write(dir.path().join("cfg.new"), b"\n").unwrap();
        std::fs::rename(dir.path().join("cfg.new"), dir.path().join("cfg")).unwrap();
        assert_eq!(cache.open_netascii(b"cfg").unwrap().slice(0, 100), b"\r\n");
        let big = std::fs::File::create(dir.path().join("big")).unwrap();
        big.set_len(NETASCII_MAX_BYTES + 1).unwrap(); // sparse
        drop(big); // open for writing, it would be answered busy
        assert_eq!(
            cache.open_netascii(b"big").err(),
            Some(ResolveError::TooLargeForNetascii)
        );
    }

    #[test]
    fn mapping_outlives_its_transfers_until_it_lingered() {
        use crate::files::linger::LINGER;
        let (dir, cache) = cache_with("kernel", b"kernel bytes");
        let first = cache.open(b"kernel").unwrap();
        let weak = Arc::downgrade(&first);
        drop(first); // the transfer ended
        let again = cache.open(b"kernel").unwrap();
        assert!(
            Arc::ptr_eq(&again, &weak.upgrade().unwrap()),
            "the next transfer finds the same mapping: nothing mapped or faulted again"
        );
        // Unused for less than LINGER, or still in a transfer: kept.
        let now = Instant::now();
        cache.expire_lingering(now + LINGER * 2);
        assert_eq!(cache.lingering_files(), 1, "in a transfer: kept");
        drop(again);
        cache.expire_lingering(now + LINGER * 2 + LINGER / 2);
        assert_eq!(cache.lingering_files(), 1, "used half a LINGER ago: kept");
        cache.expire_lingering(now + LINGER * 4);
        assert_eq!(cache.lingering_files(), 0);
        assert!(weak.upgrade().is_none(), "unmapped once it lingered");
        // A writer's revocation lets go at the next expiry, however recent.
        let held = cache.open(b"kernel").unwrap();
        let weak = Arc::downgrade(&held);
        drop(held);
        std::fs::write(dir.path().join("kernel"), b"rewritten").unwrap();
        let start = Instant::now();
        while !weak.upgrade().is_some_and(|f| f.gate().is_revoked()) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "lease break never arrived"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        cache.expire_lingering(Instant::now());
        assert!(weak.upgrade().is_none(), "a revoked file is not kept");
        assert_eq!(cache.open(b"kernel").unwrap().slice(0, 100), b"rewritten");
    }

    #[test]
    fn shares_one_mapping_and_sees_renames() {
        let (dir, cache) = cache_with("f", b"old contents");
        let a = cache.open(b"f").unwrap();
        let b = cache.open(b"/f").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.is_mapped(), "root may lease its own files");
        assert_eq!(a.slice(4, 100), b"contents");
        std::fs::write(dir.path().join("f.new"), b"new").unwrap();
        std::fs::rename(dir.path().join("f.new"), dir.path().join("f")).unwrap();
        let c = cache.open(b"f").unwrap();
        assert_eq!(c.slice(0, 100), b"new");
        assert_eq!(
            a.slice(0, 3),
            b"old",
            "running transfers keep the old version"
        );
    }

    #[test]
    fn in_place_rewrite_waits_for_sends_then_revokes() {
        let (dir, cache) = cache_with("f", &[7u8; 100_000]);
        let served = cache.open(b"f").unwrap();
        assert!(served.gate().begin(1), "a send is in the kernel");
        let written = Arc::new(AtomicBool::new(false));
        let writer = {
            let (path, written) = (dir.path().join("f"), written.clone());
            std::thread::spawn(move || {
                std::fs::write(path, b"rewritten").unwrap(); // O_TRUNC: breaks the lease
                written.store(true, Ordering::SeqCst);
            })
        };
        let start = Instant::now();
        while !served.gate().is_revoked() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "lease break never arrived"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!served.gate().begin(0), "no new send after revocation");
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !written.load(Ordering::SeqCst),
            "writer got in while a send was in flight"
        );
        served.gate().end(1);
        writer.join().unwrap();
        assert!(written.load(Ordering::SeqCst));
        let fresh = cache.open(b"f").unwrap();
        assert!(!Arc::ptr_eq(&fresh, &served));
        assert_eq!(fresh.slice(0, 100), b"rewritten");
    }

    #[test]
    fn empty_file() {
        let (_dir, cache) = cache_with("empty", b"");
        let f = cache.open(b"empty").unwrap();
        assert!(f.is_empty());
        assert_eq!(f.slice(0, 512), b"");
    }
}

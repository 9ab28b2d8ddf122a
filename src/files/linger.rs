//! Mapped files kept for a while after their last transfer.
//!
//! The cache holds files weakly: the last transfer to finish drops the
//! mapping. A boot loader's next request for the same kernel, or the next
//! machine of a rack booted one after another, would then map it again,
//! fault every page into the page tables again (MADV_POPULATE_READ) and
//! unmap it once more, which cost a quarter of the CPU of a 256 MiB
//! transfer at 64 KB blocks. So each mapped file stays referenced here
//! until [`LINGER`] after the last transfer that used it, at most
//! [`MAX_FILES`] of them. Holding one costs its page tables (2 MiB per GiB
//! once populated) and keeps its lease, which a writer still breaks at
//! once (the watcher revokes and lets it in), after which it goes at the
//! next expiry; a file deleted or replaced by rename is freed on disk
//! [`LINGER`] after its last transfer, not at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::ServedFile;

/// How long an unused mapping stays.
pub const LINGER: Duration = Duration::from_secs(30);
/// Most files kept; the least recently used goes first.
pub const MAX_FILES: usize = 64;

#[derive(Debug, Default)]
pub struct Lingering {
    /// (last used, file), in no particular order.
    files: Vec<(Instant, Arc<ServedFile>)>,
}

impl Lingering {
    /// `file` was just opened: keep it (from `now`), dropping the least
    /// recently used one beyond [`MAX_FILES`]. Returns what to drop, so
    /// the caller unmaps outside its lock.
    pub fn touch(&mut self, file: &Arc<ServedFile>, now: Instant) -> Option<Arc<ServedFile>> {
        if let Some(entry) = self.files.iter_mut().find(|(_, f)| Arc::ptr_eq(f, file)) {
            entry.0 = now;
            return None;
        }
        self.files.push((now, file.clone()));
        if self.files.len() <= MAX_FILES {
            return None;
        }
        let oldest = (0..self.files.len()).min_by_key(|&i| self.files[i].0)?;
        Some(self.files.swap_remove(oldest).1)
    }

    /// Drops files unused for [`LINGER`] and files revoked by a writer;
    /// a file still in a transfer counts as used now. Returns them, for
    /// the caller to drop outside its lock.
    pub fn expire(&mut self, now: Instant) -> Vec<Arc<ServedFile>> {
        let mut gone = Vec::new();
        let mut i = 0;
        while i < self.files.len() {
            let (used, file) = &mut self.files[i];
            if Arc::strong_count(file) > 1 {
                *used = now;
            }
            if file.gate().is_revoked() || now.saturating_duration_since(*used) >= LINGER {
                gone.push(self.files.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
        gone
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }
}

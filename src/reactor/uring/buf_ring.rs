//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): fixed-size receive
//! buffers the kernel picks from when a multishot receive completes, so no
//! buffer is tied to a socket while it waits.
//!
//! The ring is a power-of-two array of `{addr, len, bid}` entries whose
//! first entry's last two bytes are the tail: we write entries at
//! `tail & mask` and then publish the new tail (a release store); the
//! kernel consumes from its private head. Each completion names the buffer
//! (`bid`) it filled; from then until we put it back the kernel does not
//! touch it. [`ProvidedBuf`] is that loan: it gives the buffer back on drop,
//! exactly once.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;
use io_uring::types::BufRingEntry;

/// Anonymous, page-aligned, zero-filled memory that the kernel may read or
/// write at any time while it is registered: only ever reached through raw
/// pointers, never through a Rust reference covering all of it.
struct Region {
    addr: NonNull<u8>,
    len: usize,
}

impl Region {
    fn new(len: usize) -> io::Result<Region> {
        // SAFETY: an anonymous private mapping aliases nothing; the result
        // is checked before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let addr = NonNull::new(addr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Region { addr, len })
    }

    fn as_ptr(&self) -> *mut u8 {
        self.addr.as_ptr()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this range; the owner (the backend)
        // drops the ring, which ends the kernel's use, before this memory.
        unsafe { libc::munmap(self.addr.as_ptr().cast(), self.len) };
    }
}

/// One shard's receive buffers and the ring that offers them to the kernel.
pub struct BufRing {
    /// The ring entries (16 bytes each); the tail lives inside entry 0.
    entries: Region,
    /// `count` buffers of `buf_len` bytes, back to back.
    buffers: Region,
    count: u16,
    buf_len: u32,
    /// Our copy of the tail: entries below it have been offered.
    tail: u16,
    /// Which buffers the application holds right now (lent by a
    /// completion, not yet given back): guards against giving one twice.
    held: Box<[bool]>,
}

impl BufRing {
    /// Allocates `count` buffers of `buf_len` bytes, registers them with the
    /// ring as group `bgid` and offers every one to the kernel.
    pub fn register(
        submitter: &Submitter<'_>,
        bgid: u16,
        count: u16,
        buf_len: u32,
    ) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 1 << 15 || buf_len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring: bad size",
            ));
        }
        let entries = Region::new(usize::from(count) * size_of::<BufRingEntry>())?;
        let buffers = Region::new(usize::from(count) * buf_len as usize)?;
        // SAFETY: `entries` is page-aligned, zero-filled and `count` entries
        // long; it stays mapped for as long as this BufRing, which the
        // backend drops only after the ring itself (field and local order),
        // so it outlives the registration.
        unsafe { submitter.register_buf_ring_with_flags(entries.as_ptr() as u64, count, bgid, 0) }
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("registering a provided-buffer ring (IORING_REGISTER_PBUF_RING): {e}"),
                )
            })?;
        let mut ring = BufRing {
            entries,
            buffers,
            count,
            buf_len,
            tail: 0,
            held: vec![true; count.into()].into(),
        };
        for bid in 0..count {
            ring.give_back(bid);
        }
        Ok(ring)
    }

    /// Size of every buffer.
    pub fn buf_len(&self) -> u32 {
        self.buf_len
    }

    /// Takes the loan of buffer `bid`, which a completion says holds `len`
    /// bytes. `None` for a buffer id we never offered or already hold.
    pub fn take(&mut self, bid: u16, len: usize) -> Option<ProvidedBuf<'_>> {
        let held = self.held.get_mut(usize::from(bid))?;
        if *held {
            return None;
        }
        *held = true;
        let len = len.min(self.buf_len as usize);
        Some(ProvidedBuf {
            ring: self,
            bid,
            len,
        })
    }

    /// Offers buffer `bid` to the kernel again and publishes the new tail.
    fn give_back(&mut self, bid: u16) {
        let Some(held) = self.held.get_mut(usize::from(bid)) else {
            return;
        };
        if !*held {
            return;
        }
        *held = false;
        let mask = self.count - 1;
        let index = usize::from(self.tail & mask);
        let base = self.entries.as_ptr().cast::<BufRingEntry>();
        // SAFETY: `index < count`, so the entry lies inside `entries`; the
        // kernel reads only entries between its head and the published
        // tail, and this one is at our unpublished tail, so no one else
        // touches it now. The buffer address is inside `buffers`.
        unsafe {
            let entry = &mut *base.add(index);
            entry.set_addr(
                self.buffers
                    .as_ptr()
                    .add(usize::from(bid) * self.buf_len as usize) as u64,
            );
            entry.set_len(self.buf_len);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field is the last u16 of entry 0 (page-aligned
        // base + 14, so aligned for AtomicU16) and the kernel only reads it;
        // the release store makes the entry written above visible first.
        unsafe {
            let tail = BufRingEntry::tail(base).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

/// A received buffer lent to the application; given back on drop.
pub struct ProvidedBuf<'a> {
    ring: &'a mut BufRing,
    bid: u16,
    len: usize,
}

impl ProvidedBuf<'_> {
    pub fn bytes(&self) -> &[u8] {
        let offset = usize::from(self.bid) * self.ring.buf_len as usize;
        // SAFETY: `bid < count` (checked in `take`) and `len <= buf_len`, so
        // the range lies inside `buffers`; the kernel filled it before
        // posting the completion and will not write it again until `drop`
        // offers it back, which cannot happen while this borrow lives.
        unsafe { std::slice::from_raw_parts(self.ring.buffers.as_ptr().add(offset), self.len) }
    }
}

impl Drop for ProvidedBuf<'_> {
    fn drop(&mut self) {
        self.ring.give_back(self.bid);
    }
}

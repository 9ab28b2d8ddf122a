//! Preallocated send slots: everything the kernel reads while a `SendMsg`
//! is in flight (msghdr, iovecs, destination, control message, head bytes)
//! plus the reference that keeps the mapped file alive, at an address that
//! does not move until the send's completion arrives.
//!
//! The slots are allocated once per shard; a send takes a free one and its
//! completion gives it back, so steady state allocates nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use socket2::SockAddr;

use crate::files::ServedFile;
use crate::reactor::shard::{MAX_SEGMENTS, Outgoing};
use crate::reactor::socket::{SEND_CONTROL_LEN, write_send_control};

/// Largest head a slot holds: a DATA header, or an OACK or ERROR, which
/// the shard builds in a buffer of this size.
pub const HEAD_MAX: usize = 256;

struct Slot {
    msg: libc::msghdr,
    /// Head and payload of each packet: one pair, or a GSO window's worth.
    iov: [libc::iovec; 2 * MAX_SEGMENTS],
    to: SockAddr,
    control: [u8; SEND_CONTROL_LEN],
    head: [u8; HEAD_MAX],
    /// DATA headers of a GSO window's packets after the first.
    segment_heads: [[u8; 4]; MAX_SEGMENTS],
    /// Whether this send is a GSO window (its failure may mean "no GSO").
    gso: bool,
    /// Set while the slot's send carries file bytes: keeps the mapping
    /// alive and says whose gate to end.
    file: Option<Arc<ServedFile>>,
    /// Handed to the kernel and not completed yet.
    in_flight: bool,
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            // SAFETY: msghdr is plain data; all-zero (null pointers, zero
            // lengths) is a valid value.
            msg: unsafe { std::mem::zeroed() },
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; 2 * MAX_SEGMENTS],
            to: SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0))),
            control: [0; SEND_CONTROL_LEN],
            head: [0; HEAD_MAX],
            segment_heads: [[0; 4]; MAX_SEGMENTS],
            gso: false,
            file: None,
            in_flight: false,
        }
    }
}

/// Why a packet could not be given a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// Every slot is in flight: reap completions and try again.
    AllBusy,
    /// The head is larger than a slot holds (a bug in the caller).
    HeadTooLong,
}

pub struct SendSlots {
    slots: Box<[Slot]>,
    /// Indices of slots not in flight.
    free: Vec<u32>,
}

impl SendSlots {
    pub fn new(count: u32) -> SendSlots {
        let slots: Box<[Slot]> = (0..count).map(|_| Slot::empty()).collect();
        // Pop order: lowest index first (cache-friendlier at low load).
        let free = (0..count).rev().collect();
        SendSlots { slots, free }
    }

    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Fills a free slot with `packet` and returns its index and the
    /// msghdr to submit. The slot stays taken (and the msghdr, everything it
    /// points to, and the file stay put) until `complete(index)`.
    pub fn prepare(&mut self, packet: &Outgoing<'_>) -> Result<(u32, *const libc::msghdr), NoSlot> {
        if packet.head.len() > HEAD_MAX {
            return Err(NoSlot::HeadTooLong);
        }
        let index = self.free.pop().ok_or(NoSlot::AllBusy)?;
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return Err(NoSlot::AllBusy);
        };
        slot.in_flight = true;
        let head_len = packet.head.len();
        slot.head[..head_len].copy_from_slice(packet.head);
        slot.iov[0] = libc::iovec {
            iov_base: slot.head.as_mut_ptr().cast(),
            iov_len: head_len,
        };
        let mut iov_count = 1;
        if let Some((file, bytes)) = packet.payload {
            // The kernel reads these bytes straight from the mapping; the
            // Arc clone keeps the mapping alive until the completion.
            slot.iov[1] = libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            };
            slot.file = Some(Arc::clone(file));
            iov_count = 2;
        }
        let more = &packet.more[..packet.more.len().min(MAX_SEGMENTS - 1)];
        for (i, segment) in more.iter().enumerate() {
            slot.segment_heads[i] = segment.head;
            slot.iov[2 + 2 * i] = libc::iovec {
                iov_base: slot.segment_heads[i].as_mut_ptr().cast(),
                iov_len: 4,
            };
            slot.iov[3 + 2 * i] = libc::iovec {
                iov_base: segment.payload.as_ptr().cast_mut().cast(),
                iov_len: segment.payload.len(),
            };
            iov_count += 2;
        }
        slot.gso = !more.is_empty();
        let segment_size = slot
            .gso
            .then(|| (slot.iov[0].iov_len + slot.iov[1].iov_len) as u16);
        slot.to = SockAddr::from(packet.to);
        let control_len = write_send_control(&mut slot.control, packet.source, segment_size);
        slot.msg.msg_name = slot.to.as_ptr().cast_mut().cast();
        slot.msg.msg_namelen = slot.to.len();
        slot.msg.msg_iov = slot.iov.as_mut_ptr();
        slot.msg.msg_iovlen = iov_count;
        if control_len > 0 {
            slot.msg.msg_control = slot.control.as_mut_ptr().cast();
            slot.msg.msg_controllen = control_len;
        } else {
            slot.msg.msg_control = std::ptr::null_mut();
            slot.msg.msg_controllen = 0;
        }
        slot.msg.msg_flags = 0;
        Ok((index, &slot.msg))
    }

    /// The send in slot `index` is over (sent, failed, or never submitted):
    /// ends its file's gate on `shard`, drops the file and frees the slot.
    /// Ignores an index that is not in flight. Returns whether that send
    /// was a GSO window.
    pub fn complete(&mut self, index: u32, shard: usize) -> bool {
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return false;
        };
        if !slot.in_flight {
            return false;
        }
        slot.in_flight = false;
        if let Some(file) = slot.file.take() {
            file.gate().end(shard);
        }
        slot.iov[1] = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        self.free.push(index);
        std::mem::take(&mut slot.gso)
    }
}

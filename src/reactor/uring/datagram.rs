//! The layout of a multishot `recvmsg` result: each provided buffer holds
//! an `io_uring_recvmsg_out` header, then the source address field, then
//! the control field, then the payload, with field sizes fixed by the
//! msghdr the receive was armed with.

use std::mem::size_of;

use io_uring::types::RecvMsgOut;

use std::net::SocketAddr;

use crate::reactor::socket::{CONTROL_LEN, RecvMeta, parse_control, sockaddr_to_std};

/// `struct io_uring_recvmsg_out`: four u32 (name, control and payload
/// lengths, flags) at the start of every buffer.
const RECVMSG_OUT_LEN: usize = 16;

/// A received datagram's source, control messages and payload (`None`
/// when it was cut short).
pub type Parts<'a> = (SocketAddr, &'a [u8], Option<&'a [u8]>);

/// The msghdr every multishot receive is armed with. Only the two lengths
/// matter to the kernel (it lays the buffer out by them); the same values
/// split the buffer afterwards. Boxed, so its address stays put while
/// receives that were armed with it are in flight.
pub struct RecvTemplate {
    msg: Box<libc::msghdr>,
}

impl RecvTemplate {
    pub fn new() -> RecvTemplate {
        // SAFETY: msghdr is plain data; all-zero is a valid value.
        let mut msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_controllen = CONTROL_LEN;
        RecvTemplate { msg }
    }

    pub fn as_ptr(&self) -> *const libc::msghdr {
        &*self.msg
    }

    /// Bytes of every buffer taken before the payload starts.
    pub fn overhead(&self) -> usize {
        RECVMSG_OUT_LEN + self.msg.msg_namelen as usize + self.msg.msg_controllen
    }

    /// Splits a filled buffer into the source address, the control
    /// messages and the payload (`None` when the payload was cut short).
    /// `None` when the buffer or the source address is malformed.
    pub fn parts<'a>(&self, filled: &'a [u8]) -> Option<Parts<'a>> {
        let out = RecvMsgOut::parse(filled, &self.msg).ok()?;
        if out.is_name_data_truncated() {
            return None;
        }
        let name = out.name_data();
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = name.len().min(size_of::<libc::sockaddr_storage>());
        // SAFETY: `len` bytes fit both the source slice and the storage.
        unsafe {
            std::ptr::copy_nonoverlapping(name.as_ptr(), (&raw mut storage).cast::<u8>(), len)
        };
        let from = sockaddr_to_std(&storage)?;
        // The fields lie back to back at fixed offsets; `RecvMsgOut` lends
        // them only for its own lifetime, so take them from `filled`.
        let control_at = RECVMSG_OUT_LEN + self.msg.msg_namelen as usize;
        let control = filled.get(control_at..control_at + out.control_data().len())?;
        if out.is_payload_truncated() {
            return Some((from, control, None));
        }
        let start = self.overhead();
        let payload = filled.get(start..start + out.payload_data().len())?;
        Some((from, control, Some(payload)))
    }

    /// Splits a filled buffer into where the datagram came from and its
    /// payload. `None` when the buffer or the source address is malformed.
    /// A payload cut short because it did not fit is returned empty, so
    /// the shard counts it as malformed (as the epoll backend does).
    pub fn parse<'a>(&self, filled: &'a [u8]) -> Option<(RecvMeta, &'a [u8])> {
        let (from, control, payload) = self.parts(filled)?;
        let (local_ip, ifindex) = parse_control(control);
        let meta = RecvMeta {
            from,
            local_ip,
            ifindex,
        };
        Some((meta, payload.unwrap_or(&[])))
    }
}

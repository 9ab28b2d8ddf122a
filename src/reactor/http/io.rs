//! The socket calls of an HTTP response: a non-blocking `recv` into the
//! connection's buffer and one `sendmsg` of the head's rest and a chunk of
//! the file, the file bytes copied by the kernel straight from the mapping
//! while the file's lease gate is held.

use std::io;
use std::os::fd::RawFd;

use crate::files::ServedFile;

/// Most file bytes handed to one `sendmsg` (keeps one fast client from
/// holding the shard while others wait).
pub const SEND_CHUNK: usize = 1 << 20;

/// One non-blocking `recv`; `Ok(0)` is the client's end of stream.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for its length during the call.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Sends `head` and then up to [`SEND_CHUNK`] bytes of `file` from
/// `offset` (of `left` still due) in one call. The file part is sent
/// inside the file's send gate; an error when the file is being rewritten
/// (the response must end short) or changed before its last bytes.
pub fn send(
    fd: RawFd,
    head: &[u8],
    body: Option<(&ServedFile, u64, u64)>,
    shard: usize,
) -> io::Result<usize> {
    let Some((file, offset, left)) = body else {
        return sendmsg(fd, &[head]);
    };
    let len = left.min(SEND_CHUNK as u64) as usize;
    if left == len as u64 && !file.unchanged() {
        return Err(io::Error::other("the file changed while it was served"));
    }
    if !file.gate().begin(shard) {
        return Err(io::Error::other("the file is being rewritten"));
    }
    let result = sendmsg(fd, &[head, file.slice(offset, len)]);
    file.gate().end(shard);
    result
}

/// Sends `parts` in order with one non-blocking `sendmsg`.
pub fn sendmsg(fd: RawFd, parts: &[&[u8]]) -> io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 2];
    let mut count = 0;
    for part in parts.iter().filter(|p| !p.is_empty()).take(iov.len()) {
        iov[count] = libc::iovec {
            iov_base: part.as_ptr() as *mut _,
            iov_len: part.len(),
        };
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: msghdr is plain data; the iovecs point into `parts`, which
    // outlive this synchronous call.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = count;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

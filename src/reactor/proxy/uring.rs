//! The proxy's io_uring receive path: a multishot `recvmsg` armed on each
//! proxy socket, fed from a provided-buffer ring (the machinery the TFTP
//! shards use), so one `io_uring_enter` per wake-up both sleeps and hands
//! over every datagram that arrived meanwhile. Each wake-up answers the
//! port-4011 completions first, then port 67's; replies leave by
//! `sendmmsg` in batches, as on the epoll backend.
//!
//! The kernel writes into the receive buffers until each multishot receive
//! has posted its last completion: shutdown cancels both and waits for
//! those before the buffers are freed (or leaks them after a bound).

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use io_uring::opcode::{AsyncCancel, RecvMsgMulti};
use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue};

use super::Answerer;
use super::batch::Arrival;
use crate::dhcp::{Reason, ServerPort};
use crate::reactor::uring::buf_ring::BufRing;
use crate::reactor::uring::datagram::RecvTemplate;
use crate::reactor::uring::{build_ring, ended_for_a_passing_reason};
use crate::reactor::{MAX_WAIT, Shared};

const BUF_GROUP: u16 = 0;
/// Receive buffers: a burst of this many datagrams between two wake-ups
/// is taken whole (2 MiB); beyond it the sockets' own buffers hold the
/// rest until the receive is re-armed.
const RECV_BUFFERS: u16 = 1024;
const RECV_BUF_LEN: u32 = 2048;
/// Completion ring entries: every buffer's completion fits.
const CQ_ENTRIES: u32 = 2 * RECV_BUFFERS as u32;
const CANCEL: u64 = u64::MAX;
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// The user data of each socket's receive.
fn token(port: ServerPort) -> u64 {
    match port {
        ServerPort::Dhcp => 0,
        ServerPort::Pxe => 1,
    }
}

/// The ring and the memory the kernel writes into; fields drop in order,
/// the ring first.
struct ProxyRing {
    ring: IoUring,
    bufs: BufRing,
    template: Box<RecvTemplate>,
    /// Completions of one wake-up: (user data, result, flags).
    completions: Vec<(u64, i32, u32)>,
    /// Whether each socket's receive is armed (dhcp, pxe).
    armed: [bool; 2],
}

/// Sets the ring up; an error means the caller should serve with
/// `recvmmsg` instead.
pub fn setup() -> io::Result<impl FnOnce(&mut Answerer, &Shared)> {
    let ring = build_ring(64, CQ_ENTRIES)?;
    let bufs = BufRing::register(&ring.submitter(), BUF_GROUP, RECV_BUFFERS, RECV_BUF_LEN)?;
    let ring = ProxyRing {
        ring,
        bufs,
        template: Box::new(RecvTemplate::new()),
        completions: Vec::with_capacity(CQ_ENTRIES as usize),
        armed: [false; 2],
    };
    Ok(move |answerer: &mut Answerer, shared: &Shared| serve(ring, answerer, shared))
}

fn serve(mut r: ProxyRing, answerer: &mut Answerer, shared: &Shared) {
    // Port 4011 first here too: what is queued there is taken first.
    for port in [ServerPort::Pxe, ServerPort::Dhcp] {
        r.arm(port, answerer.fd(port));
    }
    while !shared.stop.load(Ordering::Relaxed) {
        let wait = answerer.delayed.next_due().map_or(MAX_WAIT, |due| {
            due.saturating_duration_since(Instant::now()).min(MAX_WAIT)
        });
        if let Err(e) = r.wait(wait) {
            tracing::error!("proxyDHCP: io_uring wait failed: {e}; the proxy stops");
            break;
        }
        r.completions.extend(
            r.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        // Machines halfway through their boot first.
        for port in [ServerPort::Pxe, ServerPort::Dhcp] {
            for i in 0..r.completions.len() {
                let (user_data, result, flags) = r.completions[i];
                if user_data == token(port) {
                    r.on_receive(answerer, port, result, flags);
                }
            }
        }
        r.completions.clear();
        if !answerer.delayed.is_empty() {
            answerer.release_delayed(Instant::now());
        }
        answerer.flush();
    }
    answerer.flush();
    r.shutdown();
}

impl ProxyRing {
    fn arm(&mut self, port: ServerPort, fd: i32) {
        let entry = RecvMsgMulti::new(Fd(fd), self.template.as_ptr(), BUF_GROUP)
            .build()
            .user_data(token(port));
        // SAFETY: the msghdr template is boxed here and the buffers belong
        // to the registered group; both outlive the ring (dropped first,
        // and `shutdown` waits for the receives to end). The kernel holds
        // its own reference to the socket.
        let pushed = unsafe { self.ring.submission().push(&entry) }.is_ok();
        self.armed[token(port) as usize] = pushed;
        if !pushed {
            tracing::warn!("proxyDHCP: cannot arm a receive: the submission ring is full");
        }
    }

    /// Submits what is queued and sleeps until a completion or `timeout`.
    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let timespec = Timespec::from(timeout);
        let args = SubmitArgs::new().timespec(&timespec);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                    Ok(())
                }
                _ => Err(e),
            },
        }
    }

    /// One receive completion: answer its datagram, give the buffer back,
    /// re-arm the receive if the kernel ended it for a passing reason.
    fn on_receive(&mut self, answerer: &mut Answerer, port: ServerPort, result: i32, flags: u32) {
        let filled = usize::try_from(result).unwrap_or(0);
        if let Some(bid) = cqueue::buffer_select(flags)
            && let Some(buf) = self.bufs.take(bid, filled)
            && filled > 0
        {
            match self.template.parts(buf.bytes()) {
                Some((from, control, Some(payload))) => {
                    match Arrival::from_control(from, control) {
                        Some(arrival) => answerer.answer(payload, arrival, port),
                        None => answerer.metrics.silence(Reason::Unreadable),
                    }
                }
                _ => answerer.metrics.silence(Reason::Unreadable),
            }
        }
        if cqueue::more(flags) {
            return;
        }
        self.armed[token(port) as usize] = false;
        if ended_for_a_passing_reason(result) {
            self.arm(port, answerer.fd(port));
        } else {
            tracing::error!(
                port = port.number(),
                "proxyDHCP: receive ended: {}",
                io::Error::from_raw_os_error(-result)
            );
        }
    }

    /// Cancels both receives and waits (bounded) for their last
    /// completions; only then may the buffers go.
    fn shutdown(mut self) {
        for port in [ServerPort::Dhcp, ServerPort::Pxe] {
            if self.armed[token(port) as usize] {
                let cancel = AsyncCancel::new(token(port)).build().user_data(CANCEL);
                // SAFETY: a cancellation carries no pointers.
                let _ = unsafe { self.ring.submission().push(&cancel) };
            }
        }
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        while self.armed.iter().any(|&a| a) {
            if Instant::now() >= deadline {
                tracing::warn!(
                    "proxyDHCP: receives still armed at shutdown; leaking their buffers"
                );
                std::mem::forget(self);
                return;
            }
            let _ = self.wait(Duration::from_millis(10));
            for cqe in self.ring.completion() {
                if cqe.user_data() != CANCEL && !cqueue::more(cqe.flags()) {
                    self.armed[(cqe.user_data() & 1) as usize] = false;
                }
                if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                    drop(self.bufs.take(bid, 0));
                }
            }
        }
    }
}

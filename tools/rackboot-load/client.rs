//! One simulated client downloading one file, as a sans-IO state machine in
//! the style of the server's `ReadTransfer`: the engine feeds it datagrams
//! and clock ticks, and it answers with the datagram to send, if any. No
//! sockets, no clock, no threads, so the unit tests below drive it packet by
//! packet.
//!
//! The client side of RFC 1350 with options (RFC 2347/2348/2349) and
//! windows (RFC 7440):
//! - it sends the RRQ, accepts an OACK (answered with ACK 0) or DATA 1 (the
//!   server ignored the options: 512-byte blocks, lock-step), and locks onto
//!   the source address of that first reply (the server's TID); a packet
//!   from any other port of the server's host gets ERROR 5;
//! - it ACKs after `window` in-order blocks, at the short final block, and at
//!   once (once per gap) when a block arrives ahead of the next expected
//!   one, naming the last in-order block;
//! - blocks are counted with 64-bit absolute numbers and compared on the
//!   wire as 16-bit ones, so the block number may roll over 65535 -> 0;
//! - silence for one retry interval resends the RRQ (no answer yet) or ACKs
//!   the last in-order block; after `max` retries in a row the transfer
//!   fails;
//! - every block is compared with the local copy of the file when there is
//!   one, else the total length with the announced tsize.

#![forbid(unsafe_code)]

use bytes::Bytes;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rackboot::wire::tftp::{self as wire, ErrorCode, Opcode, Options, Packet};

/// Largest datagram the engine needs room for (blksize 65464 + header).
pub const MAX_DATAGRAM: usize = 65536;
/// Room for any datagram a client sends: an RRQ with a 512-byte name and
/// three options is well under this.
pub const SEND_BUF: usize = 1024;
/// The block size of RFC 1350, in force when the server sends no OACK.
const DEFAULT_BLKSIZE: u64 = 512;
/// RFC 2348 bounds.
const MIN_BLKSIZE: u64 = 8;
const MAX_BLKSIZE: u64 = 65464;

/// The options a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ask {
    pub blksize: Option<u16>,
    pub windowsize: Option<u16>,
    pub tsize: bool,
}

impl Ask {
    fn any(&self) -> bool {
        self.blksize.is_some() || self.windowsize.is_some() || self.tsize
    }
}

/// The client's own retransmission policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Silence after which the last RRQ or ACK is sent again.
    pub interval: Duration,
    /// Retransmissions in a row before the transfer fails.
    pub max: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            interval: Duration::from_secs(1),
            max: 5,
        }
    }
}

/// What the client does with the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Download the whole file.
    Download,
    /// Send the RRQ, note the first answer, and never ACK: the server is
    /// left with an abandoned transfer.
    Abandon,
}

/// What the answer should be.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The file's exact content (from `--verify-dir`), mapped.
    pub content: Option<Bytes>,
    /// ERROR 1 (file not found) is an expected answer, not a failure.
    pub may_miss: bool,
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every block arrived, verified, and the final one was ACKed.
    Complete {
        bytes: u64,
    },
    /// ERROR 1 to a request that was allowed to miss.
    Missing,
    /// `Role::Abandon`: the server started the transfer (OACK or DATA 1).
    Accepted,
    Failed(Failure),
}

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server sent ERROR `code`.
    ServerError { code: u16, message: String },
    /// `max` retransmissions went unanswered; `answered` tells whether the
    /// server had answered the request at all.
    TimedOut { answered: bool },
    /// A block differs from the local copy at this byte offset.
    Mismatch { offset: u64 },
    /// The file is longer or shorter than the local copy or the tsize.
    WrongSize { expected: u64, got: u64 },
    /// The OACK grants something not asked for, or more than asked.
    BadOack(&'static str),
    /// A packet that has no place in a download (an ACK, a request...).
    Unexpected(&'static str),
}

impl Failure {
    /// A short name, for grouping failures in the summary.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::ServerError { .. } => "server error",
            Failure::TimedOut { answered: false } => "no answer",
            Failure::TimedOut { answered: true } => "timed out",
            Failure::Mismatch { .. } => "content mismatch",
            Failure::WrongSize { .. } => "wrong size",
            Failure::BadOack(_) => "bad OACK",
            Failure::Unexpected(_) => "unexpected packet",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::ServerError { code, message } => write!(f, "ERROR {code} {message:?}"),
            Failure::TimedOut { answered: false } => write!(f, "request never answered"),
            Failure::TimedOut { answered: true } => write!(f, "server went silent"),
            Failure::Mismatch { offset } => {
                write!(f, "content differs from the local copy at byte {offset}")
            }
            Failure::WrongSize { expected, got } => {
                write!(f, "expected {expected} bytes, got {got}")
            }
            Failure::BadOack(why) => write!(f, "bad OACK: {why}"),
            Failure::Unexpected(what) => write!(f, "unexpected packet: {what}"),
        }
    }
}

/// A datagram to send: `len` bytes at the start of the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Send {
    pub to: SocketAddr,
    pub len: usize,
}

/// What the retry timer resends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    Rrq,
    Ack,
}

#[derive(Debug)]
pub struct Transfer {
    server: SocketAddr,
    /// The server's TID, once it answered.
    peer: Option<SocketAddr>,
    file: String,
    ask: Ask,
    role: Role,
    expect: Expect,
    retry: Retry,
    blksize: u64,
    window: u64,
    tsize: Option<u64>,
    /// Absolute number of the next in-order block (1 is the first DATA).
    next: u64,
    /// In-order blocks received since the last ACK.
    unacked: u64,
    /// The gap at `next` was already reported with an ACK.
    gap_reported: bool,
    /// The last block ACKed (0: ACK 0 or nothing yet).
    acked: u64,
    bytes: u64,
    last: Last,
    deadline: Instant,
    retries: u32,
    /// The request went one retry interval without any answer.
    unanswered: bool,
    outcome: Option<Outcome>,
}

impl Transfer {
    pub fn new(
        server: SocketAddr,
        file: String,
        ask: Ask,
        role: Role,
        expect: Expect,
        retry: Retry,
        now: Instant,
    ) -> Transfer {
        Transfer {
            server,
            peer: None,
            file,
            ask,
            role,
            expect,
            retry,
            blksize: DEFAULT_BLKSIZE,
            window: 1,
            tsize: None,
            next: 1,
            unacked: 0,
            gap_reported: false,
            acked: 0,
            bytes: 0,
            last: Last::Rrq,
            deadline: now + retry.interval,
            retries: 0,
            unanswered: false,
            outcome: None,
        }
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Payload bytes received in order so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the request went one retry interval without an answer.
    pub fn unanswered(&self) -> bool {
        self.unanswered
    }

    /// When `handle_timeout` must be called; `None` once finished.
    pub fn deadline(&self) -> Option<Instant> {
        self.outcome.is_none().then_some(self.deadline)
    }

    /// The request that starts the transfer.
    pub fn request(&mut self, now: Instant, out: &mut [u8]) -> Send {
        self.last = Last::Rrq;
        self.deadline = now + self.retry.interval;
        Send {
            to: self.server,
            len: self.emit_rrq(out),
        }
    }

    fn emit_rrq(&self, out: &mut [u8]) -> usize {
        let blksize = self.ask.blksize.map(|b| b.to_string());
        let windowsize = self.ask.windowsize.map(|w| w.to_string());
        let mut options: Vec<(&[u8], &[u8])> = Vec::with_capacity(3);
        if self.ask.tsize {
            options.push((b"tsize", b"0"));
        }
        if let Some(b) = &blksize {
            options.push((b"blksize", b.as_bytes()));
        }
        if let Some(w) = &windowsize {
            options.push((b"windowsize", w.as_bytes()));
        }
        // A name too long for SEND_BUF is caught when the scenario is built;
        // an empty RRQ would only go unanswered.
        wire::emit_request(out, Opcode::Rrq, self.file.as_bytes(), b"octet", &options).unwrap_or(0)
    }

    /// One received datagram, from `from`.
    pub fn handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Option<Send> {
        if self.outcome.is_some() || from.ip() != self.server.ip() {
            return None; // late, or not from the server's host at all
        }
        if self.peer.is_some_and(|peer| peer != from) {
            // RFC 1350: another TID (e.g. a second transfer started by a
            // retransmitted RRQ) is told so; this transfer goes on.
            let len =
                wire::emit_error(out, ErrorCode::UnknownTid, "Unknown transfer ID").unwrap_or(0);
            return Some(Send { to: from, len });
        }
        let Ok(packet) = Packet::parse(datagram) else {
            return None;
        };
        match packet {
            Packet::Error { code, message } => {
                self.peer.get_or_insert(from);
                let outcome = if code == ErrorCode::FileNotFound as u16
                    && self.expect.may_miss
                    && self.next == 1
                {
                    Outcome::Missing
                } else {
                    let message = String::from_utf8_lossy(message).into_owned();
                    Outcome::Failed(Failure::ServerError { code, message })
                };
                self.outcome = Some(outcome);
                None
            }
            Packet::Oack(options) => self.on_oack(now, from, options, out),
            Packet::Data { block, payload } => self.on_data(now, from, block, payload, out),
            Packet::Ack { .. } => self.fail(
                Failure::Unexpected("ACK from the server"),
                ErrorCode::IllegalOperation,
                out,
            ),
            Packet::Rrq(_) | Packet::Wrq(_) => self.fail(
                Failure::Unexpected("request from the server"),
                ErrorCode::IllegalOperation,
                out,
            ),
        }
    }

    fn on_oack(
        &mut self,
        now: Instant,
        from: SocketAddr,
        options: Options<'_>,
        out: &mut [u8],
    ) -> Option<Send> {
        if self.peer.is_some() {
            // Our ACK 0 was lost and the server sent its OACK again.
            return (self.next == 1 && self.last == Last::Ack).then(|| self.ack(now, out));
        }
        self.peer = Some(from);
        if !self.ask.any() {
            return self.fail(
                Failure::BadOack("OACK to a request without options"),
                ErrorCode::OptionRefused,
                out,
            );
        }
        for (name, value) in options.iter() {
            let value = wire::parse_decimal(value);
            if name.eq_ignore_ascii_case(b"blksize") {
                match (self.ask.blksize, value) {
                    (Some(asked), Some(v))
                        if (MIN_BLKSIZE..=u64::from(asked).min(MAX_BLKSIZE)).contains(&v) =>
                    {
                        self.blksize = v;
                    }
                    _ => {
                        return self.fail(
                            Failure::BadOack("blksize not asked for or larger than asked"),
                            ErrorCode::OptionRefused,
                            out,
                        );
                    }
                }
            } else if name.eq_ignore_ascii_case(b"windowsize") {
                match (self.ask.windowsize, value) {
                    (Some(asked), Some(v)) if (1..=u64::from(asked)).contains(&v) => {
                        self.window = v
                    }
                    _ => {
                        return self.fail(
                            Failure::BadOack("windowsize not asked for or larger than asked"),
                            ErrorCode::OptionRefused,
                            out,
                        );
                    }
                }
            } else if name.eq_ignore_ascii_case(b"tsize") {
                match (self.ask.tsize, value) {
                    (true, Some(v)) => self.tsize = Some(v),
                    _ => {
                        return self.fail(
                            Failure::BadOack("tsize not asked for or not a number"),
                            ErrorCode::OptionRefused,
                            out,
                        );
                    }
                }
            } else {
                return self.fail(
                    Failure::BadOack("an option that was not asked for"),
                    ErrorCode::OptionRefused,
                    out,
                );
            }
        }
        if let (Some(tsize), Some(content)) = (self.tsize, &self.expect.content) {
            let expected = content.len() as u64;
            if tsize != expected {
                return self.fail(
                    Failure::WrongSize {
                        expected,
                        got: tsize,
                    },
                    ErrorCode::NotDefined,
                    out,
                );
            }
        }
        if self.role == Role::Abandon {
            self.outcome = Some(Outcome::Accepted);
            return None;
        }
        self.retries = 0;
        Some(self.ack(now, out))
    }

    fn on_data(
        &mut self,
        now: Instant,
        from: SocketAddr,
        block: u16,
        payload: &[u8],
        out: &mut [u8],
    ) -> Option<Send> {
        if self.peer.is_none() {
            // No OACK: the server ignored the options (RFC 2347 allows it),
            // so RFC 1350 rules apply. Anything but DATA 1 is a stale packet
            // for an earlier user of this port.
            if block != 1 {
                return None;
            }
            self.peer = Some(from);
            if self.role == Role::Abandon {
                self.outcome = Some(Outcome::Accepted);
                return None;
            }
        }
        let expected = self.next as u16;
        if block != expected {
            if block.wrapping_sub(expected) < 0x8000 {
                // Ahead: a block went missing. Say where we are, once.
                if !self.gap_reported {
                    self.gap_reported = true;
                    return Some(self.ack(now, out));
                }
            } else if self.acked > 0 && block == self.acked as u16 {
                // The server resent up to the block we ACKed last: that ACK
                // was lost.
                return Some(self.ack(now, out));
            }
            return None;
        }
        let len = payload.len() as u64;
        if len > self.blksize {
            return self.fail(
                Failure::Unexpected("DATA longer than the block size"),
                ErrorCode::IllegalOperation,
                out,
            );
        }
        let offset = (self.next - 1) * self.blksize;
        if let Some(content) = &self.expect.content {
            let end = offset + len;
            let local = usize::try_from(offset)
                .ok()
                .zip(usize::try_from(end).ok())
                .and_then(|(a, b)| content.get(a..b));
            if local != Some(payload) {
                let offset = match local {
                    Some(local) => {
                        offset
                            + local
                                .iter()
                                .zip(payload)
                                .position(|(a, b)| a != b)
                                .unwrap_or(0) as u64
                    }
                    None => offset,
                };
                return self.fail(Failure::Mismatch { offset }, ErrorCode::NotDefined, out);
            }
        } else if let Some(tsize) = self.tsize
            && offset + len > tsize
        {
            return self.fail(
                Failure::WrongSize {
                    expected: tsize,
                    got: offset + len,
                },
                ErrorCode::NotDefined,
                out,
            );
        }
        self.bytes += len;
        self.next += 1;
        self.unacked += 1;
        self.gap_reported = false;
        self.retries = 0;
        self.deadline = now + self.retry.interval;
        if len < self.blksize {
            let expected = self
                .expect
                .content
                .as_ref()
                .map(|c| c.len() as u64)
                .or(self.tsize);
            if let Some(expected) = expected.filter(|&e| e != self.bytes) {
                return self.fail(
                    Failure::WrongSize {
                        expected,
                        got: self.bytes,
                    },
                    ErrorCode::NotDefined,
                    out,
                );
            }
            let ack = self.ack(now, out);
            self.outcome = Some(Outcome::Complete { bytes: self.bytes });
            return Some(ack);
        }
        (self.unacked >= self.window).then(|| self.ack(now, out))
    }

    /// ACKs the last in-order block (0 right after the OACK).
    fn ack(&mut self, now: Instant, out: &mut [u8]) -> Send {
        let block = self.next - 1;
        self.acked = block;
        self.unacked = 0;
        self.last = Last::Ack;
        self.deadline = now + self.retry.interval;
        let len = wire::emit_ack(out, block as u16).unwrap_or(0);
        Send {
            to: self.peer.unwrap_or(self.server),
            len,
        }
    }

    /// Ends the transfer and tells the server why, so it can let go at once.
    fn fail(&mut self, failure: Failure, code: ErrorCode, out: &mut [u8]) -> Option<Send> {
        self.outcome = Some(Outcome::Failed(failure));
        let peer = self.peer?;
        let len = wire::emit_error(out, code, "rackboot-load: transfer rejected").unwrap_or(0);
        Some(Send { to: peer, len })
    }

    /// The retry timer: resend, or give up after `max` retries.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut [u8]) -> Option<Send> {
        if self.outcome.is_some() || now < self.deadline {
            return None;
        }
        let answered = self.peer.is_some();
        if !answered {
            self.unanswered = true;
        }
        if self.retries >= self.retry.max {
            return self.fail(Failure::TimedOut { answered }, ErrorCode::NotDefined, out);
        }
        self.retries += 1;
        Some(match self.last {
            Last::Rrq => self.request(now, out),
            Last::Ack => self.ack(now, out),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "127.0.0.1:69";
    const TID: &str = "127.0.0.1:40000";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn content(len: usize) -> Bytes {
        (0..len)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect::<Vec<_>>()
            .into()
    }

    fn transfer(ask: Ask, role: Role, expect: Expect, now: Instant) -> Transfer {
        Transfer::new(
            addr(SERVER),
            "f".into(),
            ask,
            role,
            expect,
            Retry::default(),
            now,
        )
    }

    fn oack(options: &[(&str, u64)]) -> Vec<u8> {
        let mut p = vec![0, 6];
        for (k, v) in options {
            p.extend_from_slice(k.as_bytes());
            p.push(0);
            p.extend_from_slice(v.to_string().as_bytes());
            p.push(0);
        }
        p
    }

    fn data(block: u16, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0; payload.len() + 4];
        let n = wire::emit_data(&mut buf, block, payload).unwrap();
        buf.truncate(n);
        buf
    }

    /// DATA for absolute block `abs` of `file` at `blksize`.
    fn block_of(file: &[u8], abs: u64, blksize: usize) -> Vec<u8> {
        let start = ((abs - 1) as usize * blksize).min(file.len());
        let end = (start + blksize).min(file.len());
        data(abs as u16, &file[start..end])
    }

    /// Feeds one datagram from the server's TID; returns what the client
    /// sent, parsed back as (destination, packet bytes).
    fn feed(t: &mut Transfer, now: Instant, packet: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
        let mut out = [0u8; SEND_BUF];
        t.handle(now, addr(TID), packet, &mut out)
            .map(|s| (s.to, out[..s.len].to_vec()))
    }

    fn ack_of(sent: Option<(SocketAddr, Vec<u8>)>) -> Option<u16> {
        let (to, bytes) = sent?;
        assert_eq!(to, addr(TID), "ACK went elsewhere");
        match Packet::parse(&bytes).unwrap() {
            Packet::Ack { block } => Some(block),
            other => panic!("expected an ACK, sent {other:?}"),
        }
    }

    #[test]
    fn request_carries_the_options() {
        let now = Instant::now();
        let ask = Ask {
            blksize: Some(1408),
            windowsize: Some(8),
            tsize: true,
        };
        let mut t = transfer(ask, Role::Download, Expect::default(), now);
        let mut out = [0u8; SEND_BUF];
        let s = t.request(now, &mut out);
        assert_eq!(s.to, addr(SERVER));
        let Packet::Rrq(req) = Packet::parse(&out[..s.len]).unwrap() else {
            panic!("not an RRQ")
        };
        assert_eq!(req.filename, b"f");
        assert_eq!(req.options.get("blksize"), Some(&b"1408"[..]));
        assert_eq!(req.options.get("windowsize"), Some(&b"8"[..]));
        assert_eq!(req.options.get("tsize"), Some(&b"0"[..]));
    }

    #[test]
    fn oack_then_window_acks_and_short_final_block() {
        let now = Instant::now();
        let file = content(100); // blksize 8: 12 full blocks and 4 bytes
        let ask = Ask {
            blksize: Some(8),
            windowsize: Some(4),
            tsize: true,
        };
        let expect = Expect {
            content: Some(file.clone()),
            may_miss: false,
        };
        let mut t = transfer(ask, Role::Download, expect, now);
        assert_eq!(
            ack_of(feed(
                &mut t,
                now,
                &oack(&[("blksize", 8), ("tsize", 100), ("windowsize", 4)])
            )),
            Some(0)
        );
        let mut acks = Vec::new();
        for abs in 1..=13 {
            if let Some(b) = ack_of(feed(&mut t, now, &block_of(&file, abs, 8))) {
                acks.push(b);
            }
        }
        assert_eq!(
            acks,
            vec![4, 8, 12, 13],
            "an ACK per window and one for the short block"
        );
        assert_eq!(t.outcome(), Some(&Outcome::Complete { bytes: 100 }));
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn data_without_oack_runs_lock_step_at_512() {
        let now = Instant::now();
        let file = content(1024); // two full blocks, then an empty one
        let ask = Ask {
            blksize: Some(1408),
            windowsize: Some(16),
            tsize: false,
        };
        let expect = Expect {
            content: Some(file.clone()),
            may_miss: false,
        };
        let mut t = transfer(ask, Role::Download, expect, now);
        for abs in 1..=3 {
            assert_eq!(
                ack_of(feed(&mut t, now, &block_of(&file, abs, 512))),
                Some(abs as u16)
            );
        }
        assert_eq!(t.outcome(), Some(&Outcome::Complete { bytes: 1024 }));
    }

    #[test]
    fn gap_is_acked_once_with_the_last_in_order_block() {
        let now = Instant::now();
        let file = content(8 * 40);
        let ask = Ask {
            blksize: Some(8),
            windowsize: Some(8),
            tsize: false,
        };
        let expect = Expect {
            content: Some(file.clone()),
            may_miss: false,
        };
        let mut t = transfer(ask, Role::Download, expect, now);
        feed(&mut t, now, &oack(&[("blksize", 8), ("windowsize", 8)]));
        assert_eq!(ack_of(feed(&mut t, now, &block_of(&file, 1, 8))), None);
        assert_eq!(ack_of(feed(&mut t, now, &block_of(&file, 2, 8))), None);
        // Block 3 lost: 4 triggers an ACK of 2; 5 and 6 stay quiet.
        assert_eq!(ack_of(feed(&mut t, now, &block_of(&file, 4, 8))), Some(2));
        assert_eq!(ack_of(feed(&mut t, now, &block_of(&file, 5, 8))), None);
        assert_eq!(ack_of(feed(&mut t, now, &block_of(&file, 6, 8))), None);
        // The server restarts at 3; the window counts from the gap ACK.
        let acks: Vec<_> = (3..=10)
            .filter_map(|abs| ack_of(feed(&mut t, now, &block_of(&file, abs, 8))))
            .collect();
        assert_eq!(acks, vec![10]);
        // A second gap is reported again.
        assert_eq!(ack_of(feed(&mut t, now, &block_of(&file, 12, 8))), Some(10));
        assert_eq!(t.bytes(), 80);
    }

    #[test]
    fn block_number_rolls_over() {
        let now = Instant::now();
        let blocks = 65_540u64;
        let file = content(blocks as usize * 8 + 3);
        let ask = Ask {
            blksize: Some(8),
            windowsize: Some(1),
            tsize: true,
        };
        let expect = Expect {
            content: Some(file.clone()),
            may_miss: false,
        };
        let mut t = transfer(ask, Role::Download, expect, now);
        feed(
            &mut t,
            now,
            &oack(&[
                ("blksize", 8),
                ("windowsize", 1),
                ("tsize", file.len() as u64),
            ]),
        );
        for abs in 1..=blocks + 1 {
            let ack = ack_of(feed(&mut t, now, &block_of(&file, abs, 8)));
            assert_eq!(ack, Some(abs as u16), "block {abs}");
        }
        assert_eq!(
            t.outcome(),
            Some(&Outcome::Complete {
                bytes: file.len() as u64
            })
        );
    }

    #[test]
    fn rolled_over_block_is_not_mistaken_for_an_old_one() {
        // After 65535 the next wire number is 0; a stale block 65535 resent
        // later is old, block 1 (absolute 65537) is ahead.
        let now = Instant::now();
        let ask = Ask {
            blksize: Some(8),
            windowsize: Some(4),
            tsize: false,
        };
        let mut t = transfer(ask, Role::Download, Expect::default(), now);
        feed(&mut t, now, &oack(&[("blksize", 8), ("windowsize", 4)]));
        for abs in 1..=65_536u64 {
            feed(&mut t, now, &data(abs as u16, &[0; 8]));
        }
        assert_eq!(t.next, 65_537);
        assert_eq!(
            ack_of(feed(&mut t, now, &data(65535, &[0; 8]))),
            None,
            "old block"
        );
        assert_eq!(
            ack_of(feed(&mut t, now, &data(2, &[0; 8]))),
            Some(0),
            "gap after wire block 0"
        );
    }

    #[test]
    fn resent_window_gets_its_ack_again() {
        let now = Instant::now();
        let ask = Ask {
            blksize: Some(8),
            windowsize: Some(2),
            tsize: false,
        };
        let mut t = transfer(ask, Role::Download, Expect::default(), now);
        feed(&mut t, now, &oack(&[("blksize", 8), ("windowsize", 2)]));
        feed(&mut t, now, &data(1, &[1; 8]));
        assert_eq!(ack_of(feed(&mut t, now, &data(2, &[2; 8]))), Some(2));
        // ACK 2 lost: the server resends 1 and 2.
        assert_eq!(ack_of(feed(&mut t, now, &data(1, &[1; 8]))), None);
        assert_eq!(ack_of(feed(&mut t, now, &data(2, &[2; 8]))), Some(2));
    }

    #[test]
    fn duplicate_oack_is_answered_with_ack_0() {
        let now = Instant::now();
        let ask = Ask {
            blksize: Some(512),
            windowsize: None,
            tsize: false,
        };
        let mut t = transfer(ask, Role::Download, Expect::default(), now);
        assert_eq!(
            ack_of(feed(&mut t, now, &oack(&[("blksize", 512)]))),
            Some(0)
        );
        assert_eq!(
            ack_of(feed(&mut t, now, &oack(&[("blksize", 512)]))),
            Some(0)
        );
        feed(&mut t, now, &data(1, &[0; 512]));
        assert_eq!(feed(&mut t, now, &oack(&[("blksize", 512)])), None);
    }

    #[test]
    fn bad_oacks_fail_and_tell_the_server() {
        let now = Instant::now();
        let ask = Ask {
            blksize: Some(1024),
            windowsize: None,
            tsize: false,
        };
        for bad in [
            oack(&[("blksize", 2048)]),
            oack(&[("windowsize", 4)]),
            oack(&[("timeout", 5)]),
        ] {
            let mut t = transfer(ask, Role::Download, Expect::default(), now);
            let (to, bytes) = feed(&mut t, now, &bad).expect("an ERROR");
            assert_eq!(to, addr(TID));
            assert!(matches!(
                Packet::parse(&bytes),
                Ok(Packet::Error { code: 8, .. })
            ));
            assert!(matches!(
                t.outcome(),
                Some(Outcome::Failed(Failure::BadOack(_)))
            ));
        }
        let mut t = transfer(Ask::default(), Role::Download, Expect::default(), now);
        feed(&mut t, now, &oack(&[("blksize", 512)]));
        assert!(matches!(
            t.outcome(),
            Some(Outcome::Failed(Failure::BadOack(_)))
        ));
    }

    #[test]
    fn other_tid_gets_error_5_and_the_transfer_goes_on() {
        let now = Instant::now();
        let mut t = transfer(Ask::default(), Role::Download, Expect::default(), now);
        assert_eq!(ack_of(feed(&mut t, now, &data(1, &[0; 512]))), Some(1));
        let mut out = [0u8; SEND_BUF];
        let stray = addr("127.0.0.1:40001");
        let s = t
            .handle(now, stray, &data(1, &[0; 512]), &mut out)
            .expect("an ERROR 5");
        assert_eq!(s.to, stray);
        assert!(matches!(
            Packet::parse(&out[..s.len]),
            Ok(Packet::Error { code: 5, .. })
        ));
        // Another host is ignored outright.
        assert_eq!(
            t.handle(now, addr("127.0.0.9:40000"), &data(2, &[0; 3]), &mut out),
            None
        );
        assert_eq!(ack_of(feed(&mut t, now, &data(2, &[0; 3]))), Some(2));
        assert_eq!(t.outcome(), Some(&Outcome::Complete { bytes: 515 }));
    }

    #[test]
    fn corrupted_block_or_wrong_length_fails() {
        let now = Instant::now();
        let file = content(600);
        let expect = Expect {
            content: Some(file.clone()),
            may_miss: false,
        };
        let mut t = transfer(Ask::default(), Role::Download, expect.clone(), now);
        let mut bad = file[..512].to_vec();
        bad[100] ^= 1;
        feed(&mut t, now, &data(1, &bad));
        assert_eq!(
            t.outcome(),
            Some(&Outcome::Failed(Failure::Mismatch { offset: 100 }))
        );

        let mut t = transfer(Ask::default(), Role::Download, expect, now);
        feed(&mut t, now, &data(1, &file[..512]));
        feed(&mut t, now, &data(2, &file[512..590]));
        assert_eq!(
            t.outcome(),
            Some(&Outcome::Failed(Failure::WrongSize {
                expected: 600,
                got: 590
            }))
        );

        // Without a local copy the tsize is the reference.
        let ask = Ask {
            blksize: None,
            windowsize: None,
            tsize: true,
        };
        let mut t = transfer(ask, Role::Download, Expect::default(), now);
        feed(&mut t, now, &oack(&[("tsize", 600)]));
        feed(&mut t, now, &data(1, &[0; 512]));
        feed(&mut t, now, &data(2, &[0; 10]));
        assert_eq!(
            t.outcome(),
            Some(&Outcome::Failed(Failure::WrongSize {
                expected: 600,
                got: 522
            }))
        );
    }

    #[test]
    fn file_not_found_is_a_miss_only_where_expected() {
        let now = Instant::now();
        let mut out = [0u8; SEND_BUF];
        let n = wire::emit_error(&mut out, ErrorCode::FileNotFound, "File not found").unwrap();
        let miss = out[..n].to_vec();
        let mut t = transfer(
            Ask::default(),
            Role::Download,
            Expect {
                content: None,
                may_miss: true,
            },
            now,
        );
        assert_eq!(feed(&mut t, now, &miss), None);
        assert_eq!(t.outcome(), Some(&Outcome::Missing));
        let mut t = transfer(Ask::default(), Role::Download, Expect::default(), now);
        feed(&mut t, now, &miss);
        assert!(matches!(
            t.outcome(),
            Some(Outcome::Failed(Failure::ServerError { code: 1, .. }))
        ));
    }

    #[test]
    fn silence_resends_then_fails() {
        let start = Instant::now();
        let mut t = transfer(Ask::default(), Role::Download, Expect::default(), start);
        let mut out = [0u8; SEND_BUF];
        t.request(start, &mut out);
        let mut now = start;
        let mut resent = 0;
        while t.outcome().is_none() {
            assert_eq!(
                t.handle_timeout(t.deadline().unwrap() - Duration::from_millis(1), &mut out),
                None
            );
            now = t.deadline().unwrap();
            if let Some(s) = t.handle_timeout(now, &mut out) {
                assert_eq!(s.to, addr(SERVER));
                assert!(matches!(Packet::parse(&out[..s.len]), Ok(Packet::Rrq(_))));
                resent += 1;
            }
        }
        assert_eq!(resent, Retry::default().max);
        assert!(t.unanswered());
        assert_eq!(
            t.outcome(),
            Some(&Outcome::Failed(Failure::TimedOut { answered: false }))
        );
        assert_eq!(
            now - start,
            Retry::default().interval * (Retry::default().max + 1)
        );
    }

    #[test]
    fn timeout_mid_transfer_acks_the_last_in_order_block() {
        let now = Instant::now();
        let ask = Ask {
            blksize: Some(8),
            windowsize: Some(4),
            tsize: false,
        };
        let mut t = transfer(ask, Role::Download, Expect::default(), now);
        feed(&mut t, now, &oack(&[("blksize", 8), ("windowsize", 4)]));
        feed(&mut t, now, &data(1, &[0; 8]));
        feed(&mut t, now, &data(2, &[0; 8]));
        assert!(!t.unanswered());
        let mut out = [0u8; SEND_BUF];
        let later = t.deadline().unwrap();
        let s = t.handle_timeout(later, &mut out).unwrap();
        assert_eq!(s.to, addr(TID));
        assert_eq!(Packet::parse(&out[..s.len]), Ok(Packet::Ack { block: 2 }));
        // Progress resets the retry count.
        feed(&mut t, later, &data(3, &[0; 8]));
        assert_eq!(t.retries, 0);
    }

    #[test]
    fn abandoner_notes_the_answer_and_sends_nothing() {
        let now = Instant::now();
        let ask = Ask {
            blksize: Some(1468),
            windowsize: Some(16),
            tsize: true,
        };
        let mut t = transfer(ask, Role::Abandon, Expect::default(), now);
        assert_eq!(
            feed(
                &mut t,
                now,
                &oack(&[("blksize", 1468), ("tsize", 9), ("windowsize", 16)])
            ),
            None
        );
        assert_eq!(t.outcome(), Some(&Outcome::Accepted));
        let mut t = transfer(Ask::default(), Role::Abandon, Expect::default(), now);
        assert_eq!(feed(&mut t, now, &data(1, &[0; 512])), None);
        assert_eq!(t.outcome(), Some(&Outcome::Accepted));
    }
}

//! One simulated client's HTTP/1.1 connection as a sans-IO state machine,
//! in the style of `client::Transfer`: the engine opens the TCP socket and
//! moves bytes; this module says what to send, reads the responses and
//! decides how each request ended. No sockets, no clock, no threads.
//!
//! The client side of HTTP/1.1 as a boot loader uses it (iPXE,
//! lpxelinux.0): one `GET` at a time on a kept-alive connection (no
//! pipelining), and a body delimited by `Content-Length` only:
//! - the response head (status line and header fields, at most
//!   [`MAX_HEAD`] bytes, lines ending in CRLF or a bare LF) must say
//!   `HTTP/1.x 200` and carry one `Content-Length`; a response without it
//!   (chunked or delimited by the close) fails, as does a malformed head;
//! - `Connection: close` (or an HTTP/1.0 response without
//!   `Connection: keep-alive`) ends the connection after the body: the
//!   next request needs a new one (see [`Connection::can_request`]);
//! - every body byte is compared with the local copy when there is one
//!   (and `Content-Length` with its length), else only the length is
//!   checked: a connection that ends before `Content-Length` bytes is a
//!   short body;
//! - bytes beyond the body (a request is never pipelined, so nothing may
//!   follow) fail the request;
//! - no progress (connecting, sending or receiving) for the stall limit
//!   fails the request.
//!
//! Nothing a server sends can make this code panic: every length is
//! checked, every number parsed with overflow checks.

#![forbid(unsafe_code)]

use bytes::Bytes;
use std::fmt;
use std::time::{Duration, Instant};

/// Most bytes a response head may take, status line and fields.
pub const MAX_HEAD: usize = 16 * 1024;
/// Longest file name requested (before percent-encoding).
pub const MAX_PATH: usize = 2048;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The TCP connection could not be opened.
    Connect(String),
    /// A send or receive failed (e.g. reset) before the body began.
    Io(String),
    /// The connection ended before any byte of the response.
    NoResponse,
    /// A status other than 200.
    Status(u16),
    /// The head breaks the protocol.
    Malformed(&'static str),
    /// No `Content-Length` (chunked, or delimited by the close).
    NoContentLength,
    /// The head did not end within [`MAX_HEAD`] bytes.
    HeadTooLarge,
    /// `Content-Length` differs from the local copy's length.
    WrongSize { expected: u64, got: u64 },
    /// The body differs from the local copy at this byte offset.
    Mismatch { offset: u64 },
    /// The connection ended (or broke) after `got` of `expected` body bytes.
    ShortBody { expected: u64, got: u64 },
    /// Bytes after the body, though no other request was sent.
    Excess,
    /// No progress for the stall limit; `answered`: some of the response
    /// had arrived.
    Stalled { answered: bool },
}

impl Failure {
    /// A short name, for grouping failures in the summary.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Connect(_) => "http connect",
            Failure::Io(_) => "http connection error",
            Failure::NoResponse => "http no response",
            Failure::Status(_) => "http status",
            Failure::Malformed(_) => "http malformed response",
            Failure::NoContentLength => "http no content-length",
            Failure::HeadTooLarge => "http head too large",
            Failure::WrongSize { .. } => "http wrong size",
            Failure::Mismatch { .. } => "http content mismatch",
            Failure::ShortBody { .. } => "http short body",
            Failure::Excess => "http excess bytes",
            Failure::Stalled { answered: false } => "http no answer",
            Failure::Stalled { answered: true } => "http stalled",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "cannot connect: {e}"),
            Failure::Io(e) => write!(f, "connection failed before the body: {e}"),
            Failure::NoResponse => write!(f, "connection closed without a response"),
            Failure::Status(code) => write!(f, "status {code}, not 200"),
            Failure::Malformed(why) => write!(f, "malformed response: {why}"),
            Failure::NoContentLength => write!(
                f,
                "response without Content-Length (chunked or close-delimited bodies are not accepted)"
            ),
            Failure::HeadTooLarge => write!(f, "response head longer than {MAX_HEAD} bytes"),
            Failure::WrongSize { expected, got } => write!(
                f,
                "Content-Length {got}, but the local copy has {expected} bytes"
            ),
            Failure::Mismatch { offset } => {
                write!(f, "content differs from the local copy at byte {offset}")
            }
            Failure::ShortBody { expected, got } => {
                write!(f, "connection ended after {got} of {expected} body bytes")
            }
            Failure::Excess => write!(f, "bytes after the body, with no request outstanding"),
            Failure::Stalled { answered: false } => write!(f, "no response within the stall limit"),
            Failure::Stalled { answered: true } => {
                write!(f, "response stalled for the stall limit")
            }
        }
    }
}

/// A parsed response head: what the client needs of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub content_length: Option<u64>,
    /// The connection stays open after this response.
    pub keep_alive: bool,
    /// A `Transfer-Encoding` field is present (its body is not delimited
    /// by `Content-Length`).
    pub transfer_encoding: bool,
}

/// Parses a complete response head (status line and fields, up to and
/// including the empty line).
pub fn parse_head(head: &[u8]) -> Result<Head, Failure> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let (minor, status) = parse_status_line(lines.next().unwrap_or_default())?;
    let mut content_length = None;
    let mut transfer_encoding = false;
    let (mut close, mut keep) = (false, false);
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(Failure::Malformed("obsolete line folding"));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(Failure::Malformed("a header line without a colon"));
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(Failure::Malformed("a bad header field name"));
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let len =
                parse_length(value).ok_or(Failure::Malformed("a bad Content-Length value"))?;
            if content_length.is_some_and(|l| l != len) {
                return Err(Failure::Malformed("conflicting Content-Length fields"));
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    Ok(Head {
        status,
        content_length,
        keep_alive: !close && (minor > 0 || keep),
        transfer_encoding,
    })
}

/// `HTTP/1.x SP 3DIGIT [SP reason]`: the minor version and the status.
fn parse_status_line(line: &[u8]) -> Result<(u8, u16), Failure> {
    let bad = Failure::Malformed("a bad status line");
    let rest = line.strip_prefix(b"HTTP/1.").ok_or(bad.clone())?;
    let (&minor, rest) = rest.split_first().ok_or(bad.clone())?;
    if !minor.is_ascii_digit() {
        return Err(bad);
    }
    let rest = rest.strip_prefix(b" ").ok_or(bad.clone())?;
    let (code, reason) = rest.split_at_checked(3).ok_or(bad.clone())?;
    if !code.iter().all(u8::is_ascii_digit) || !(reason.is_empty() || reason[0] == b' ') {
        return Err(bad);
    }
    let status = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    Ok((minor - b'0', status))
}

/// A `Content-Length` value: digits only, no sign, no list, no overflow.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// RFC 9110's token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Writes a `GET` for `file` (a name under the server's root) into `out`.
pub fn write_request(out: &mut Vec<u8>, file: &str, host: &str) {
    out.clear();
    out.extend_from_slice(b"GET /");
    for &b in file.trim_start_matches('/').as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nUser-Agent: rackboot-load\r\nAccept: */*\r\n\r\n");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The TCP connection is being opened.
    Connecting,
    /// Connected; no request outstanding.
    Idle,
    /// A request is out (or going out); its response head is awaited.
    Head,
    /// The body: `len` announced, `got` so far.
    Body { len: u64, got: u64 },
    /// Closed by either side, or no longer in step: of no further use.
    Closed,
}

/// One HTTP connection and the request on it.
#[derive(Debug)]
pub struct Connection {
    host: String,
    /// No progress for this long fails the request.
    stall: Duration,
    /// A response that starts later than this counts as unanswered.
    answer_within: Duration,
    state: State,
    deadline: Instant,
    /// A request was made and has no outcome yet.
    active: bool,
    request: Vec<u8>,
    sent: usize,
    /// The response head so far (reused; at most `MAX_HEAD` bytes).
    head: Vec<u8>,
    /// Where the unfinished line of `head` begins.
    line: usize,
    expect: Option<Bytes>,
    keep_alive: bool,
    requested: Instant,
    unanswered: bool,
    outcome: Option<Result<u64, Failure>>,
}

impl Connection {
    /// A connection being opened to `host` (the `Host` field's value).
    pub fn new(host: String, stall: Duration, answer_within: Duration, now: Instant) -> Connection {
        Connection {
            host,
            stall,
            answer_within,
            state: State::Connecting,
            deadline: now + stall,
            active: false,
            request: Vec::new(),
            sent: 0,
            head: Vec::new(),
            line: 0,
            expect: None,
            keep_alive: true,
            requested: now,
            unanswered: false,
            outcome: None,
        }
    }

    /// Whether a new request may be made on this connection.
    pub fn can_request(&self) -> bool {
        !self.active && matches!(self.state, State::Connecting | State::Idle)
    }

    pub fn is_connecting(&self) -> bool {
        self.state == State::Connecting
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Starts a `GET` of `file`; `expect` is the local copy to compare
    /// with. Needs [`Connection::can_request`]; otherwise the request fails
    /// at once.
    pub fn get(&mut self, file: &str, expect: Option<Bytes>, now: Instant) {
        if !self.can_request() {
            self.outcome = Some(Err(Failure::Io("the connection is not usable".into())));
            return;
        }
        write_request(&mut self.request, file, &self.host);
        self.sent = 0;
        self.head.clear();
        self.line = 0;
        self.expect = expect;
        self.active = true;
        self.outcome = None;
        self.unanswered = false;
        self.requested = now;
        self.deadline = now + self.stall;
        if self.state == State::Idle {
            self.state = State::Head;
        }
    }

    /// The TCP connection is established.
    pub fn connected(&mut self, now: Instant) {
        if self.state == State::Connecting {
            self.state = if self.active {
                State::Head
            } else {
                State::Idle
            };
            self.deadline = now + self.stall;
        }
    }

    /// The TCP connection could not be established.
    pub fn connect_failed(&mut self, error: &str) {
        if self.state == State::Connecting {
            self.fail(Failure::Connect(error.to_string()));
        }
    }

    /// Request bytes still to send.
    pub fn to_send(&self) -> &[u8] {
        match self.state {
            State::Head | State::Body { .. } if self.active => &self.request[self.sent..],
            _ => &[],
        }
    }

    /// Whether the socket must be watched for writability.
    pub fn wants_write(&self) -> bool {
        self.state == State::Connecting || !self.to_send().is_empty()
    }

    /// `n` more bytes of [`Connection::to_send`] went out.
    pub fn sent(&mut self, n: usize, now: Instant) {
        if n > 0 && self.active {
            self.sent = (self.sent + n).min(self.request.len());
            self.deadline = now + self.stall;
        }
    }

    /// Bytes from the server; returns how many of them were body bytes of
    /// the current response (for the throughput count).
    pub fn received(&mut self, mut data: &[u8], now: Instant) -> u64 {
        if data.is_empty() {
            return 0;
        }
        if !self.active || self.outcome.is_some() {
            // Nothing was asked: the stream is out of step.
            self.state = State::Closed;
            return 0;
        }
        self.deadline = now + self.stall;
        if self.state == State::Head {
            if self.head.is_empty() && now > self.requested + self.answer_within {
                self.unanswered = true;
            }
            match self.take_head(data) {
                Ok(Some(used)) => data = &data[used..],
                Ok(None) => return 0,
                Err(f) => {
                    self.fail(f);
                    return 0;
                }
            }
            if let Err(f) = self.start_body() {
                self.fail(f);
                return 0;
            }
            if self.outcome.is_some() && !data.is_empty() {
                // An empty body, complete with its head.
                self.outcome = Some(Err(Failure::Excess));
                self.state = State::Closed;
                return 0;
            }
        }
        let State::Body { len, got } = self.state else {
            return 0;
        };
        let take = data
            .len()
            .min(usize::try_from(len - got).unwrap_or(usize::MAX));
        let chunk = &data[..take];
        if let Some(copy) = &self.expect {
            // Content-Length equals the copy's length (checked in
            // start_body), so the range is inside it.
            let at = got as usize;
            let want = &copy[at..at + take];
            if let Some(pos) = chunk.iter().zip(want).position(|(a, b)| a != b) {
                self.fail(Failure::Mismatch {
                    offset: got + pos as u64,
                });
                return pos as u64;
            }
        }
        let got = got + take as u64;
        self.state = State::Body { len, got };
        if got == len {
            self.complete(len);
            if take < data.len() {
                self.outcome = Some(Err(Failure::Excess));
                self.state = State::Closed;
            }
        }
        take as u64
    }

    /// Appends head bytes; `Some(n)` once the head is complete, `n` being
    /// how many bytes of `data` it took.
    fn take_head(&mut self, data: &[u8]) -> Result<Option<usize>, Failure> {
        let old = self.head.len();
        let take = data.len().min(MAX_HEAD - old);
        self.head.extend_from_slice(&data[..take]);
        while let Some(nl) = self.head[self.line..].iter().position(|&b| b == b'\n') {
            let end = self.line + nl;
            let line = &self.head[self.line..end];
            if line.is_empty() || line == b"\r" {
                if self.line == 0 {
                    return Err(Failure::Malformed("an empty status line"));
                }
                return Ok(Some(end + 1 - old));
            }
            self.line = end + 1;
        }
        if self.head.len() == MAX_HEAD {
            return Err(Failure::HeadTooLarge);
        }
        Ok(None)
    }

    /// Checks the complete head and moves on to the body.
    fn start_body(&mut self) -> Result<(), Failure> {
        let head = parse_head(&self.head)?;
        if head.status != 200 {
            return Err(Failure::Status(head.status));
        }
        if head.transfer_encoding {
            return Err(Failure::NoContentLength);
        }
        let len = head.content_length.ok_or(Failure::NoContentLength)?;
        if let Some(copy) = &self.expect {
            let expected = copy.len() as u64;
            if len != expected {
                return Err(Failure::WrongSize { expected, got: len });
            }
        }
        self.keep_alive = head.keep_alive;
        self.state = State::Body { len, got: 0 };
        if len == 0 {
            self.complete(0);
        }
        Ok(())
    }

    fn complete(&mut self, len: u64) {
        self.outcome = Some(Ok(len));
        self.state = if self.keep_alive && self.sent == self.request.len() {
            State::Idle
        } else {
            State::Closed
        };
    }

    /// The server closed the connection (`error` None) or it broke.
    pub fn closed(&mut self, error: Option<&std::io::Error>) {
        if self.active && self.outcome.is_none() {
            let failure = match (self.state, error) {
                (State::Body { len, got }, _) => Failure::ShortBody { expected: len, got },
                (State::Connecting, Some(e)) => Failure::Connect(e.to_string()),
                (_, Some(e)) => Failure::Io(e.to_string()),
                (_, None) if self.head.is_empty() => Failure::NoResponse,
                (_, None) => Failure::Malformed("the connection closed inside the head"),
            };
            self.fail(failure);
        }
        self.state = State::Closed;
    }

    fn fail(&mut self, failure: Failure) {
        if self.active && self.outcome.is_none() {
            self.outcome = Some(Err(failure));
        }
        self.state = State::Closed;
    }

    /// When [`Connection::on_timeout`] is due; `None` with nothing asked.
    pub fn deadline(&self) -> Option<Instant> {
        (self.active && self.outcome.is_none()).then_some(self.deadline)
    }

    pub fn on_timeout(&mut self, now: Instant) {
        if self.deadline().is_some_and(|d| now >= d) {
            let answered = !self.head.is_empty();
            self.unanswered |= !answered;
            self.fail(Failure::Stalled { answered });
        }
    }

    /// How the request ended, once it has.
    pub fn outcome(&self) -> Option<&Result<u64, Failure>> {
        self.outcome.as_ref()
    }

    /// Takes the outcome, ending the request (the body bytes on success).
    pub fn take_outcome(&mut self) -> Option<Result<u64, Failure>> {
        let outcome = self.outcome.take()?;
        self.active = false;
        self.expect = None;
        Some(outcome)
    }

    /// Whether the response began more than one retry interval after the
    /// request (or never did).
    pub fn unanswered(&self) -> bool {
        self.unanswered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(5);
    const ANSWER: Duration = Duration::from_secs(1);

    fn content(len: usize) -> Bytes {
        (0..len)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect::<Vec<_>>()
            .into()
    }

    fn response(body: &[u8], extra: &str) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n{extra}\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    /// A connected connection with a GET of `file` out.
    fn asked(file: &str, expect: Option<Bytes>, now: Instant) -> Connection {
        let mut c = Connection::new("127.0.0.1:8080".into(), STALL, ANSWER, now);
        assert!(c.can_request() && c.wants_write());
        c.get(file, expect, now);
        assert!(c.to_send().is_empty(), "nothing goes out while connecting");
        c.connected(now);
        let n = c.to_send().len();
        c.sent(n, now);
        assert!(!c.wants_write());
        c
    }

    /// The next GET on a kept-alive connection, sent whole.
    fn ask_again(c: &mut Connection, file: &str, expect: Option<Bytes>, now: Instant) {
        assert!(c.can_request());
        c.get(file, expect, now);
        let n = c.to_send().len();
        assert!(n > 0);
        c.sent(n, now);
    }

    /// Feeds `input` in pieces of `chunk` bytes; returns the body bytes counted.
    fn feed(c: &mut Connection, input: &[u8], chunk: usize, now: Instant) -> u64 {
        input
            .chunks(chunk.max(1))
            .map(|piece| c.received(piece, now))
            .sum()
    }

    #[test]
    fn the_request_is_a_plain_get_with_an_encoded_path() {
        let mut out = Vec::new();
        write_request(&mut out, "/boot/vmlinuz 6.1?x#y%", "[::1]:80");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /boot/vmlinuz%206.1%3Fx%23y%25 HTTP/1.1\r\nHost: [::1]:80\r\n\
             User-Agent: rackboot-load\r\nAccept: */*\r\n\r\n"
        );
        let now = Instant::now();
        let mut c = Connection::new("h".into(), STALL, ANSWER, now);
        c.get("a", None, now);
        c.connected(now);
        c.sent(7, now);
        assert!(c.to_send().starts_with(b"HTTP/1.1\r\nHost: h\r\n"));
        assert!(c.wants_write());
    }

    #[test]
    fn responses_on_one_kept_alive_connection_in_any_pieces() {
        let now = Instant::now();
        let body = content(100_000);
        for chunk in [1, 3, 7, 4096, 1 << 20] {
            let mut c = asked("vmlinuz", Some(body.clone()), now);
            assert_eq!(feed(&mut c, &response(&body, ""), chunk, now), 100_000);
            assert_eq!(c.take_outcome(), Some(Ok(100_000)));
            assert!(c.can_request(), "kept alive");
            ask_again(&mut c, "initrd", None, now);
            let more = response(b"xyz", "Server: t\r\n");
            assert_eq!(feed(&mut c, &more, chunk, now), 3);
            assert_eq!(c.take_outcome(), Some(Ok(3)));
            assert!(!c.unanswered());
        }
    }

    #[test]
    fn bare_lf_heads_and_empty_bodies() {
        let now = Instant::now();
        let mut c = asked("a", None, now);
        c.received(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", now);
        assert_eq!(c.take_outcome(), Some(Ok(2)));
        ask_again(&mut c, "empty", Some(Bytes::new()), now);
        c.received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", now);
        assert_eq!(c.take_outcome(), Some(Ok(0)));
        assert!(c.can_request());
        // A response before the whole request went out ends the connection.
        c.get("half", None, now);
        c.sent(3, now);
        c.received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", now);
        assert_eq!(c.take_outcome(), Some(Ok(0)));
        assert!(!c.can_request());
    }

    #[test]
    fn connection_close_and_http_1_0_end_the_connection() {
        let now = Instant::now();
        for (extra, status_line, reusable) in [
            ("Connection: close\r\n", "HTTP/1.1 200 OK", false),
            (
                "Connection: Keep-Alive, CLOSE\r\n",
                "HTTP/1.1 200 OK",
                false,
            ),
            ("", "HTTP/1.0 200 OK", false),
            ("Connection: keep-alive\r\n", "HTTP/1.0 200 OK", true),
            ("", "HTTP/1.1 200", true),
        ] {
            let mut c = asked("a", None, now);
            let text = format!("{status_line}\r\nContent-Length: 1\r\n{extra}\r\nx");
            c.received(text.as_bytes(), now);
            assert_eq!(c.take_outcome(), Some(Ok(1)), "{text:?}");
            assert_eq!(c.can_request(), reusable, "{text:?}");
        }
    }

    fn failure_of(input: &[u8], expect: Option<Bytes>) -> Failure {
        let now = Instant::now();
        let mut c = asked("f", expect, now);
        c.received(input, now);
        let failure = match c.take_outcome() {
            Some(Err(f)) => f,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        };
        assert!(
            !c.can_request() && c.is_closed(),
            "a failure ends the connection"
        );
        failure
    }

    #[test]
    fn bad_heads_fail_by_kind() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno\n",
                "http status",
            ),
            (
                b"HTTP/1.1 206 Partial\r\nContent-Length: 1\r\n\r\nx",
                "http status",
            ),
            (b"HTTP/1.1 100 Continue\r\n\r\n", "http status"),
            (b"HTTP/1.1 200 OK\r\n\r\nbody", "http no content-length"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
                "http no content-length",
            ),
            (b"HTTP/2 200\r\n\r\n", "http malformed response"),
            (b"HTTP/1.1 20\r\n\r\n", "http malformed response"),
            (b"HTTP/1.1 2000 OK\r\n\r\n", "http malformed response"),
            (b"HTTP/1.1 +20 OK\r\n\r\n", "http malformed response"),
            (b"HTTP/1.x 200 OK\r\n\r\n", "http malformed response"),
            (b"ICY 200 OK\r\n\r\n", "http malformed response"),
            (b"\r\n\r\n", "http malformed response"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "http malformed response",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n",
                "http malformed response",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                "http malformed response",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "http malformed response",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n folded\r\n\r\n",
                "http malformed response",
            ),
            (
                b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
                "http malformed response",
            ),
            (
                b"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
                "http malformed response",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy",
                "http excess bytes",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nx",
                "http excess bytes",
            ),
        ];
        for &(input, kind) in cases {
            assert_eq!(
                failure_of(input, None).kind(),
                kind,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        // The same length twice is one length.
        let now = Instant::now();
        let mut c = asked("f", None, now);
        c.received(
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\nContent-Length:1\r\n\r\nx",
            now,
        );
        assert_eq!(c.take_outcome(), Some(Ok(1)));
    }

    #[test]
    fn a_head_without_end_is_bounded() {
        let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 100, b'a');
        assert_eq!(failure_of(&long, None), Failure::HeadTooLarge);
        // Just under the limit is fine.
        let now = Instant::now();
        let mut c = asked("f", None, now);
        let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX: ".to_vec();
        head.resize(MAX_HEAD - 5, b'a');
        head.extend_from_slice(b"\r\n\r\nz");
        assert_eq!(feed(&mut c, &head, 1000, now), 1);
        assert_eq!(c.take_outcome(), Some(Ok(1)));
    }

    #[test]
    fn verification_finds_the_first_wrong_byte_and_the_wrong_length() {
        let body = content(70_000);
        let mut bad = body.to_vec();
        bad[65_537] ^= 1;
        let now = Instant::now();
        let mut c = asked("f", Some(body.clone()), now);
        let counted = feed(&mut c, &response(&bad, ""), 4096, now);
        assert_eq!(counted, 65_537, "bytes up to the difference count");
        assert_eq!(
            c.take_outcome(),
            Some(Err(Failure::Mismatch { offset: 65_537 }))
        );
        assert_eq!(
            failure_of(&response(&body[1..], ""), Some(body.clone())),
            Failure::WrongSize {
                expected: 70_000,
                got: 69_999
            }
        );
        // Without a local copy only the length is checked.
        let mut c = asked("f", None, now);
        feed(&mut c, &response(&bad, ""), 4096, now);
        assert_eq!(c.take_outcome(), Some(Ok(70_000)));
    }

    #[test]
    fn closes_and_resets_fail_by_where_they_happen() {
        let now = Instant::now();
        let body = content(1000);
        let mut c = asked("f", None, now);
        let whole = response(&body, "");
        let cut = whole.len() - 10;
        assert_eq!(c.received(&whole[..cut], now), 990);
        c.closed(None);
        assert_eq!(
            c.take_outcome(),
            Some(Err(Failure::ShortBody {
                expected: 1000,
                got: 990
            }))
        );
        assert_eq!(
            Failure::ShortBody {
                expected: 1,
                got: 0
            }
            .kind(),
            "http short body"
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let mut c = asked("f", None, now);
        c.received(&whole[..cut], now);
        c.closed(Some(&reset));
        assert!(matches!(
            c.take_outcome(),
            Some(Err(Failure::ShortBody { .. }))
        ));
        let mut c = asked("f", None, now);
        c.closed(None);
        assert_eq!(c.take_outcome(), Some(Err(Failure::NoResponse)));
        let mut c = asked("f", None, now);
        c.received(b"HTTP/1.1 200", now);
        c.closed(None);
        assert!(matches!(c.take_outcome(), Some(Err(Failure::Malformed(_)))));
        let mut c = asked("f", None, now);
        c.closed(Some(&reset));
        assert!(matches!(c.take_outcome(), Some(Err(Failure::Io(_)))));
        // Refused while connecting.
        let mut c = Connection::new("h".into(), STALL, ANSWER, now);
        c.get("f", None, now);
        c.connect_failed("Connection refused");
        assert_eq!(
            c.take_outcome().unwrap().unwrap_err().kind(),
            "http connect"
        );
        // The server closing an idle connection fails nothing.
        let mut c = asked("f", None, now);
        c.received(&response(b"ok", ""), now);
        assert_eq!(c.take_outcome(), Some(Ok(2)));
        c.closed(None);
        assert!(c.outcome().is_none() && !c.can_request());
        // Bytes nobody asked for put the connection out of use.
        let mut c = asked("f", None, now);
        c.received(&response(b"ok", ""), now);
        c.take_outcome();
        assert_eq!(c.received(b"HTTP/1.1 200 OK\r\n", now), 0);
        assert!(c.outcome().is_none() && !c.can_request());
        c.get("g", None, now);
        assert!(matches!(c.take_outcome(), Some(Err(Failure::Io(_)))));
    }

    #[test]
    fn stalls_fail_after_the_limit_and_progress_moves_it() {
        let t0 = Instant::now();
        let mut c = asked("f", None, t0);
        assert_eq!(c.deadline(), Some(t0 + STALL));
        c.on_timeout(t0 + STALL - Duration::from_millis(1));
        assert!(c.outcome().is_none());
        c.on_timeout(t0 + STALL);
        assert_eq!(
            c.take_outcome(),
            Some(Err(Failure::Stalled { answered: false }))
        );
        assert!(c.unanswered());
        // A late answer counts as unanswered; progress moves the deadline.
        let mut c = asked("f", None, t0);
        let t1 = t0 + ANSWER + Duration::from_millis(1);
        c.received(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", t1);
        assert!(c.unanswered());
        assert_eq!(c.deadline(), Some(t1 + STALL));
        c.on_timeout(t1 + STALL);
        assert_eq!(
            c.take_outcome(),
            Some(Err(Failure::Stalled { answered: true }))
        );
        assert_eq!(c.deadline(), None);
        // Connecting counts too.
        let mut c = Connection::new("h".into(), STALL, ANSWER, t0);
        c.get("f", None, t0);
        c.on_timeout(t0 + STALL);
        assert!(matches!(
            c.take_outcome(),
            Some(Err(Failure::Stalled { .. }))
        ));
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // Pseudo-random responses, some of them near-valid, fed in random
        // pieces: every one ends in an outcome or waits, without panicking.
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces: [&[u8]; 10] = [
            b"HTTP/1.1 200 OK\r\n",
            b"Content-Length: 5\r\n",
            b"Content-Length: 18446744073709551615\r\n",
            b"Connection: close\r\n",
            b"\r\n",
            b"\n",
            b"hello",
            b"\xff\x00\r",
            b"HTTP/1.0 200\n",
            b"Transfer-Encoding: chunked\r\n",
        ];
        let now = Instant::now();
        for _ in 0..2000 {
            let expect = (next() % 2 == 0).then(|| content(5));
            let mut c = asked("f", expect, now);
            let mut input = Vec::new();
            for _ in 0..next() % 12 {
                input.extend_from_slice(pieces[(next() % 10) as usize]);
            }
            let mut at = 0;
            while at < input.len() && c.outcome().is_none() {
                let n = (1 + next() % 40) as usize;
                let end = (at + n).min(input.len());
                c.received(&input[at..end], now);
                at = end;
            }
            if next() % 2 == 0 {
                c.closed(None);
            }
            c.on_timeout(now + STALL);
            assert!(c.take_outcome().is_some());
        }
    }
}

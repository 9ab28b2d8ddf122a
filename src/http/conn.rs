//! One HTTP/1.1 connection as a sans-IO state machine (in the style of
//! `tftp::transfer`): the caller reads into [`Connection::read_buf`], says
//! how much arrived, asks [`Connection::poll_request`] to answer a complete
//! head (looking the file up through a closure), sends what
//! [`Connection::transmit`] says (head bytes, then a range of the file) and
//! reports progress with [`Connection::sent`]. Time is an argument.
//!
//! Requests are answered in order, one at a time; pipelined requests wait
//! in the buffer (and reading pauses) until the response before them is
//! sent. Nothing allocates after [`Connection::new`].

use std::time::{Duration, Instant};

use super::range::Resolved;
use super::request::{self, MAX_TARGET_LEN, Method};
use super::response::{self, HeadSpec, MAX_HEAD_LEN, Status, Version};
use crate::wire::http::{self as wire, Head};

/// Room for a request head (431 beyond).
pub const MAX_HEAD_BYTES: usize = 8192;

/// Timing of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request head must be complete this long after its first byte.
    pub head_timeout: Duration,
    /// An idle keep-alive connection is closed after this long.
    pub idle_timeout: Duration,
    /// A response that makes no progress for this long (the client stopped
    /// reading) is abandoned and the connection closed.
    pub send_stall: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_stall: Duration::from_secs(30),
        }
    }
}

/// What the caller found for a path.
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    Found {
        version: Version,
        content_type: &'static str,
    },
    /// Not served: 404, 403 or 503.
    Missing(Status),
}

/// A response started: what the log line and counters need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub status: Status,
    /// `None` for a request that was not understood.
    pub method: Option<Method>,
    /// The part of the file sent (offset, bytes); bytes 0 for HEAD.
    pub body: Option<(u64, u64)>,
    pub close: bool,
}

/// What to send now: the rest of the head (and error text), then the rest
/// of the file range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a> {
    pub head: &'a [u8],
    /// (offset in the file, bytes) still to send after the head.
    pub body: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Reading,
    Sending,
    Closed,
}

pub struct Connection {
    limits: Limits,
    state: State,
    input: Box<[u8; MAX_HEAD_BYTES]>,
    filled: usize,
    path: Box<[u8; MAX_TARGET_LEN]>,
    out: [u8; MAX_HEAD_LEN + 64],
    out_len: usize,
    out_sent: usize,
    /// File bytes still to send: (next offset, bytes left).
    body: Option<(u64, u64)>,
    close_after: bool,
    deadline: Instant,
    /// The client closed its side: answer what is buffered, then close.
    peer_closed: bool,
}

impl Connection {
    pub fn new(now: Instant, limits: Limits) -> Connection {
        Connection {
            limits,
            state: State::Reading,
            input: Box::new([0; MAX_HEAD_BYTES]),
            filled: 0,
            path: Box::new([0; MAX_TARGET_LEN]),
            out: [0; MAX_HEAD_LEN + 64],
            out_len: 0,
            out_sent: 0,
            body: None,
            close_after: false,
            deadline: now + limits.idle_timeout,
            peer_closed: false,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the caller should read from the socket now (not while a
    /// response is going out: that is the backpressure on pipelining).
    pub fn wants_read(&self) -> bool {
        self.state == State::Reading && !self.peer_closed
    }

    /// Free room for incoming bytes; then call [`Connection::received`].
    pub fn read_buf(&mut self) -> &mut [u8] {
        &mut self.input[self.filled..]
    }

    /// `n` bytes were read into [`Connection::read_buf`]; 0 means the
    /// client closed its side.
    pub fn received(&mut self, n: usize, now: Instant) {
        if n == 0 {
            self.peer_closed = true;
            if self.state == State::Reading && self.filled == 0 {
                self.state = State::Closed;
            }
            return;
        }
        if self.filled == 0 && self.state == State::Reading {
            self.deadline = now + self.limits.head_timeout;
        }
        self.filled = (self.filled + n).min(MAX_HEAD_BYTES);
    }

    /// Answers the head at the front of the buffer, if it is complete.
    /// `lookup` is asked for the decoded path (without its leading `/`)
    /// of a request that names a file.
    pub fn poll_request(
        &mut self,
        now: Instant,
        lookup: impl FnOnce(&[u8]) -> Lookup,
    ) -> Option<Served> {
        if self.state != State::Reading || self.filled == 0 {
            return None;
        }
        let parsed = Head::parse(&self.input[..self.filled]);
        let (served, consumed) = match parsed {
            Ok(None) if self.filled == MAX_HEAD_BYTES => {
                (self.error(Status::HeadersTooLarge, None, true), self.filled)
            }
            Ok(None) if self.peer_closed => {
                self.state = State::Closed;
                return None;
            }
            Ok(None) => return None,
            Err(wire::Error::TooManyHeaders) => {
                (self.error(Status::HeadersTooLarge, None, true), self.filled)
            }
            Err(wire::Error::Version) => (
                self.error(Status::VersionNotSupported, None, true),
                self.filled,
            ),
            Err(wire::Error::Malformed) => {
                (self.error(Status::BadRequest, None, true), self.filled)
            }
            Ok(Some(head)) => {
                let consumed = head.len;
                let served = answer(&head, &mut self.path, lookup, &mut self.out, &mut self.body);
                self.out_len = served.1;
                (served.0, consumed)
            }
        };
        self.input.copy_within(consumed..self.filled, 0);
        self.filled -= consumed;
        self.out_sent = 0;
        self.close_after = served.close || self.peer_closed && self.filled == 0;
        self.state = State::Sending;
        self.deadline = now + self.limits.send_stall;
        Some(served)
    }

    /// An error answer with its text as the body.
    fn error(&mut self, status: Status, method: Option<Method>, close: bool) -> Served {
        let (served, len) = error_response(status, method, close, &mut self.out);
        self.out_len = len;
        self.body = None;
        served
    }

    /// What to send now; `None` when nothing is due.
    pub fn transmit(&self) -> Option<Transmit<'_>> {
        if self.state != State::Sending {
            return None;
        }
        Some(Transmit {
            head: &self.out[self.out_sent..self.out_len],
            body: self.body.filter(|&(_, left)| left > 0),
        })
    }

    /// `n` more bytes of [`Connection::transmit`] were sent.
    pub fn sent(&mut self, mut n: usize, now: Instant) {
        if self.state != State::Sending {
            return;
        }
        if n > 0 {
            self.deadline = now + self.limits.send_stall;
        }
        let head = (self.out_len - self.out_sent).min(n);
        self.out_sent += head;
        n -= head;
        if let Some((offset, left)) = &mut self.body {
            let body = (n as u64).min(*left);
            *offset += body;
            *left -= body;
        }
        if self.out_sent == self.out_len && self.body.is_none_or(|(_, left)| left == 0) {
            self.body = None;
            if self.close_after {
                self.state = State::Closed;
            } else {
                self.state = State::Reading;
                self.deadline = now
                    + if self.filled > 0 {
                        self.limits.head_timeout
                    } else {
                        self.limits.idle_timeout
                    };
            }
        }
    }

    /// The file changed under the response (or sending failed): end the
    /// connection, so the client sees a short body, never a mixed one.
    pub fn abort(&mut self) {
        self.state = State::Closed;
    }

    /// When [`Connection::on_timeout`] is due.
    pub fn timeout(&self) -> Option<Instant> {
        (self.state != State::Closed).then_some(self.deadline)
    }

    pub fn on_timeout(&mut self, now: Instant) {
        if self.state != State::Closed && now >= self.deadline {
            self.state = State::Closed;
        }
    }
}

/// Writes an error answer into `out`; returns what was served and its
/// length.
fn error_response(
    status: Status,
    method: Option<Method>,
    close: bool,
    out: &mut [u8; MAX_HEAD_LEN + 64],
) -> (Served, usize) {
    let text = response::error_body(status);
    let n = response::write_head(
        &HeadSpec {
            status,
            content_length: text.len() as u64,
            content_type: "text/plain; charset=utf-8",
            version: None,
            content_range: None,
            unsatisfied_len: None,
            close,
            retry_after: (status == Status::ServiceUnavailable).then_some(1),
        },
        &mut out[..MAX_HEAD_LEN],
    );
    // HEAD answers carry no body, even for errors.
    let body = if method == Some(Method::Head) {
        ""
    } else {
        text
    };
    out[n..n + body.len()].copy_from_slice(body.as_bytes());
    let served = Served {
        status,
        method,
        body: None,
        close,
    };
    (served, n + body.len())
}

/// Answers one parsed head: the response head (and error text) into
/// `out`, the file range to send into `body`.
fn answer(
    head: &Head<'_>,
    path_buf: &mut [u8; MAX_TARGET_LEN],
    lookup: impl FnOnce(&[u8]) -> Lookup,
    out: &mut [u8; MAX_HEAD_LEN + 64],
    body: &mut Option<(u64, u64)>,
) -> (Served, usize) {
    *body = None;
    let request = match request::interpret(head, path_buf) {
        Ok(r) => r,
        Err(status) => {
            // 405 leaves the stream in step; anything else may not.
            let close = status != Status::MethodNotAllowed || !request::keep_alive(head);
            let method = (head.method == b"HEAD").then_some(Method::Head);
            return error_response(status, method, close, out);
        }
    };
    let close = !request.keep_alive;
    let method = Some(request.method);
    let (version, content_type) = match lookup(request.path) {
        Lookup::Found {
            version,
            content_type,
        } => (version, content_type),
        Lookup::Missing(status) => return error_response(status, method, close, out),
    };
    if let Some(status) = request::precondition(head, &version) {
        if status == Status::NotModified {
            let n = response::write_head(
                &HeadSpec {
                    status,
                    content_length: 0,
                    content_type,
                    version: Some(&version),
                    content_range: None,
                    unsatisfied_len: None,
                    close,
                    retry_after: None,
                },
                &mut out[..MAX_HEAD_LEN],
            );
            let served = Served {
                status,
                method,
                body: None,
                close,
            };
            return (served, n);
        }
        return error_response(status, method, close, out);
    }
    let wanted = match request.method {
        Method::Get => request::wanted(head, &version),
        // HEAD describes the whole file (iPXE sizes its buffer from it).
        Method::Head => Resolved::Whole,
    };
    let (status, start, len, content_range) = match wanted {
        Resolved::Whole => (Status::Ok, 0, version.len, None),
        Resolved::Part { start, len } => (
            Status::PartialContent,
            start,
            len,
            Some((start, start + len - 1, version.len)),
        ),
        Resolved::Unsatisfiable => {
            let text = response::error_body(Status::RangeNotSatisfiable);
            let n = response::write_head(
                &HeadSpec {
                    status: Status::RangeNotSatisfiable,
                    content_length: text.len() as u64,
                    content_type: "text/plain; charset=utf-8",
                    version: Some(&version),
                    content_range: None,
                    unsatisfied_len: Some(version.len),
                    close,
                    retry_after: None,
                },
                &mut out[..MAX_HEAD_LEN],
            );
            out[n..n + text.len()].copy_from_slice(text.as_bytes());
            let served = Served {
                status: Status::RangeNotSatisfiable,
                method,
                body: None,
                close,
            };
            return (served, n + text.len());
        }
    };
    let n = response::write_head(
        &HeadSpec {
            status,
            content_length: len,
            content_type,
            version: Some(&version),
            content_range,
            unsatisfied_len: None,
            close,
            retry_after: None,
        },
        &mut out[..MAX_HEAD_LEN],
    );
    let sent_body = match request.method {
        Method::Get => Some((start, len)),
        Method::Head => None,
    };
    *body = sent_body;
    let served = Served {
        status,
        method,
        body: Some((start, if sent_body.is_some() { len } else { 0 })),
        close,
    };
    (served, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    const LEN: u64 = 10_000;

    fn version() -> Version {
        Version::new(42, LEN, 1, UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }

    fn lookup(path: &[u8]) -> Lookup {
        match path {
            b"ipxe.efi" | b"dir/vmlinuz" => Lookup::Found {
                version: version(),
                content_type: response::content_type(path),
            },
            b"secret" => Lookup::Missing(Status::Forbidden),
            _ => Lookup::Missing(Status::NotFound),
        }
    }

    /// Feeds `input`, then sends everything `chunk` bytes at a time;
    /// returns each response's head text and body range.
    fn exchange(
        c: &mut Connection,
        input: &[u8],
        chunk: usize,
        now: Instant,
    ) -> Vec<(String, Option<(u64, u64)>)> {
        let buf = c.read_buf();
        buf[..input.len()].copy_from_slice(input);
        c.received(input.len(), now);
        let mut out = Vec::new();
        while let Some(_served) = c.poll_request(now, lookup) {
            let mut head = Vec::new();
            let mut body_range = None;
            while let Some(t) = c.transmit() {
                if body_range.is_none() && t.head.is_empty() {
                    body_range = t.body;
                }
                let take = if !t.head.is_empty() {
                    let n = t.head.len().min(chunk);
                    head.extend_from_slice(&t.head[..n]);
                    n
                } else {
                    t.body.map_or(0, |(_, left)| (left as usize).min(chunk))
                };
                c.sent(take, now);
                if take == 0 {
                    break;
                }
            }
            out.push((String::from_utf8(head).unwrap(), body_range));
        }
        out
    }

    fn status(text: &str) -> &str {
        &text[9..12]
    }

    #[test]
    fn pipelined_requests_are_answered_in_order_through_partial_writes() {
        let now = Instant::now();
        let mut c = Connection::new(now, Limits::default());
        let input = b"HEAD /ipxe.efi HTTP/1.1\r\nHost: a\r\n\r\nGET /ipxe.efi HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\n\r\nGET /dir/vmlinuz HTTP/1.1\r\nHost: a\r\nRange: bytes=-500\r\n\r\n";
        let got = exchange(&mut c, input, 7, now);
        assert_eq!(got.len(), 4);
        assert_eq!(status(&got[0].0), "200");
        assert!(
            got[0].0.contains("Content-Length: 10000\r\n"),
            "HEAD: full length"
        );
        assert!(got[0].0.contains("Content-Type: application/efi\r\n"));
        assert_eq!(got[0].1, None, "HEAD: no body");
        assert_eq!(got[1].1, Some((0, LEN)));
        assert_eq!(status(&got[2].0), "404");
        assert!(
            got[2].0.ends_with("\r\n\r\n404 Not Found\n"),
            "{}",
            got[2].0
        );
        assert_eq!(status(&got[3].0), "206");
        assert!(
            got[3]
                .0
                .contains("Content-Range: bytes 9500-9999/10000\r\n")
        );
        assert_eq!(got[3].1, Some((9500, 500)));
        assert!(!c.is_closed() && c.wants_read(), "keep-alive");
    }

    #[test]
    fn a_head_arriving_in_pieces_is_answered_once_complete() {
        let now = Instant::now();
        let mut c = Connection::new(now, Limits::default());
        let raw = b"GET /ipxe.efi HTTP/1.1\r\nHost: a\r\n\r\n";
        for (i, &b) in raw.iter().enumerate() {
            assert!(
                c.poll_request(now, lookup).is_none(),
                "answered at byte {i}"
            );
            c.read_buf()[0] = b;
            c.received(1, now);
        }
        let served = c.poll_request(now, lookup).unwrap();
        assert_eq!(served.status, Status::Ok);
    }

    #[test]
    fn errors_close_or_keep_the_connection_as_the_stream_allows() {
        let now = Instant::now();
        let cases: [(&[u8], &str, bool); 7] = [
            (b"POST /ipxe.efi HTTP/1.1\r\nHost: a\r\n\r\n", "405", false),
            (b"GET /secret HTTP/1.1\r\nHost: a\r\n\r\n", "403", false),
            (
                b"GET /ipxe.efi HTTP/1.1\r\nHost: a\r\nIf-Match: \"old\"\r\n\r\n",
                "412",
                false,
            ),
            (
                b"GET /ipxe.efi HTTP/1.1\r\nHost: a\r\nRange: bytes=10000-\r\n\r\n",
                "416",
                false,
            ),
            (
                b"GET /ipxe.efi HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                "200",
                true,
            ),
            (
                b"GET /../x HTTP/1.1\r\nContent-Length: 3\r\nHost: a\r\n\r\nabc",
                "400",
                true,
            ),
            (b"GET / HTTP/2.0\r\n\r\n", "505", true),
        ];
        for (input, want, closes) in cases {
            let mut c = Connection::new(now, Limits::default());
            let got = exchange(&mut c, input, 1 << 20, now);
            assert_eq!(
                status(&got[0].0),
                want,
                "{}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(c.is_closed(), closes, "{want}");
            assert!(
                !got[0].0.contains("/x") && !got[0].0.contains("secret"),
                "no path in any answer"
            );
        }
        let mut c = Connection::new(now, Limits::default());
        let got = exchange(
            &mut c,
            b"GET /nope HTTP/1.1\r\nHost: a\r\nRange: bytes=-1\r\n\r\n",
            99,
            now,
        );
        assert!(got[0].0.contains("Content-Length: 14\r\n"));
    }

    #[test]
    fn header_limits_answer_431_and_close() {
        let now = Instant::now();
        let mut c = Connection::new(now, Limits::default());
        let mut long = b"GET /ipxe.efi HTTP/1.1\r\nHost: a\r\nX-Long: ".to_vec();
        long.resize(MAX_HEAD_BYTES, b'a');
        let got = exchange(&mut c, &long, 1 << 20, now);
        assert_eq!(status(&got[0].0), "431");
        assert!(c.is_closed());
        let mut c = Connection::new(now, Limits::default());
        let mut many = b"GET /ipxe.efi HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..40 {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let got = exchange(&mut c, &many, 1 << 20, now);
        assert_eq!(status(&got[0].0), "431");
        let mut c = Connection::new(now, Limits::default());
        let target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(3000));
        let got = exchange(&mut c, target.as_bytes(), 1 << 20, now);
        assert_eq!(status(&got[0].0), "414");
    }

    #[test]
    fn timeouts_slow_heads_idle_connections_and_clients_that_stop_reading() {
        let t0 = Instant::now();
        let limits = Limits::default();
        // Idle keep-alive.
        let mut c = Connection::new(t0, limits);
        assert_eq!(c.timeout(), Some(t0 + limits.idle_timeout));
        c.on_timeout(t0 + limits.idle_timeout);
        assert!(c.is_closed());
        // A head that never completes.
        let mut c = Connection::new(t0, limits);
        c.read_buf()[..4].copy_from_slice(b"GET ");
        c.received(4, t0);
        c.on_timeout(t0 + limits.head_timeout - Duration::from_millis(1));
        assert!(!c.is_closed());
        c.on_timeout(t0 + limits.head_timeout);
        assert!(c.is_closed());
        // A client that stops reading mid-body: progress resets the clock.
        let mut c = Connection::new(t0, limits);
        let raw = b"GET /ipxe.efi HTTP/1.1\r\nHost: a\r\n\r\n";
        c.read_buf()[..raw.len()].copy_from_slice(raw);
        c.received(raw.len(), t0);
        c.poll_request(t0, lookup).unwrap();
        let head_len = c.transmit().unwrap().head.len();
        let t1 = t0 + Duration::from_secs(5);
        c.sent(head_len + 1000, t1);
        assert_eq!(c.transmit().unwrap().body, Some((1000, LEN - 1000)));
        assert!(!c.wants_read(), "no reading while a response goes out");
        c.on_timeout(t1 + limits.send_stall - Duration::from_millis(1));
        assert!(!c.is_closed());
        c.on_timeout(t1 + limits.send_stall);
        assert!(c.is_closed());
    }

    #[test]
    fn eof_after_a_request_answers_it_then_closes() {
        let now = Instant::now();
        let mut c = Connection::new(now, Limits::default());
        let raw = b"GET /ipxe.efi HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        c.read_buf()[..raw.len()].copy_from_slice(raw);
        c.received(raw.len(), now);
        c.received(0, now);
        let served = c.poll_request(now, lookup).unwrap();
        assert_eq!(served.status, Status::Ok);
        let t = c.transmit().unwrap();
        let total = t.head.len() + LEN as usize;
        c.sent(total, now);
        assert!(c.is_closed());
        let _ = SystemTime::now();
    }
}

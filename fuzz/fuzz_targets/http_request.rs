//! Any bytes as a client's stream, cut anywhere: the connection never
//! panics, answers every complete head with a well-formed HTTP/1.1
//! response (status line, Content-Length that matches what is sent), and
//! never sends a body range outside the file.
#![no_main]

use std::time::{Duration, Instant, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use rackboot::http::{Connection, Limits, Lookup, Status, Version};

const LEN: u64 = 5000;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let mut c = Connection::new(now, Limits::default());
    let version = Version::new(1, LEN, 2, UNIX_EPOCH + Duration::from_secs(1_000_000));
    let step = usize::from(cut).max(1);
    let mut fed = 0;
    let mut rounds = 0;
    while !c.is_closed() && rounds < 10_000 {
        rounds += 1;
        if c.wants_read() && fed < stream.len() {
            let buf = c.read_buf();
            let n = step.min(stream.len() - fed).min(buf.len());
            buf[..n].copy_from_slice(&stream[fed..fed + n]);
            fed += n;
            c.received(n, now);
        } else if c.wants_read() {
            c.received(0, now);
        }
        let Some(served) = c.poll_request(now, |path| {
            if path.first() == Some(&b'm') {
                Lookup::Missing(Status::NotFound)
            } else {
                Lookup::Found { version, content_type: "application/octet-stream" }
            }
        }) else {
            if fed >= stream.len() && !c.wants_read() && c.transmit().is_none() {
                break;
            }
            continue;
        };
        let t = c.transmit().expect("a response to send");
        let head = t.head.to_vec();
        let text = String::from_utf8_lossy(&head);
        assert!(text.starts_with("HTTP/1.1 "), "{text}");
        let head_end = text.find("\r\n\r\n").expect("head ends") + 4;
        let length: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("Content-Length")
            .trim()
            .parse()
            .unwrap();
        let inline = (head.len() - head_end) as u64;
        match t.body {
            Some((offset, len)) => {
                assert!(offset + len <= LEN);
                assert_eq!(len, length);
                assert_eq!(inline, 0);
            }
            None => {
                let is_head = served.method == Some(rackboot::http::Method::Head);
                assert!(inline == length || is_head && inline == 0, "{text}");
            }
        }
        let total = head.len() as u64 + t.body.map_or(0, |(_, l)| l);
        c.sent(total as usize, now);
        assert!(c.transmit().is_none());
    }
});

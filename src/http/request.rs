//! What a request head asks, checked: method, the decoded path, whether the
//! connection stays open, and the preconditions and range it carries
//! against the version of the file found.

use std::time::SystemTime;

use super::range::{self, Resolved};
use super::response::{Status, Version};
use crate::wire::http::Head;

/// Longest request target accepted (414 beyond).
pub const MAX_TARGET_LEN: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

/// A request this server can answer with a file (or an error about it).
#[derive(Debug)]
pub struct Request<'a> {
    pub method: Method,
    /// The percent-decoded path, without its leading `/`, query or fragment.
    pub path: &'a [u8],
    pub keep_alive: bool,
}

/// Whether the client wants the connection kept (HTTP/1.1 unless it says
/// close; HTTP/1.0 only if it says keep-alive).
pub fn keep_alive(head: &Head<'_>) -> bool {
    if head.minor_version == 0 {
        head.lists("connection", "keep-alive")
    } else {
        !head.lists("connection", "close")
    }
}

/// Checks a head and decodes its path into `path_buf`.
pub fn interpret<'a>(
    head: &Head<'_>,
    path_buf: &'a mut [u8; MAX_TARGET_LEN],
) -> Result<Request<'a>, Status> {
    if head.target.len() > MAX_TARGET_LEN {
        return Err(Status::UriTooLong);
    }
    // No request bodies here: one could only desynchronise the stream.
    let length = head.header("content-length");
    if head.header("transfer-encoding").is_some()
        || head.count("content-length") > 1
        || length.is_some_and(|l| l.trim_ascii() != b"0")
    {
        return Err(Status::BadRequest);
    }
    if head.minor_version == 1 && head.count("host") != 1 {
        return Err(Status::BadRequest);
    }
    let method = match head.method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => return Err(Status::MethodNotAllowed),
    };
    let path = decode_path(head.target, path_buf)?;
    Ok(Request {
        method,
        path,
        keep_alive: keep_alive(head),
    })
}

/// The path of an origin-form (`/a/b?q`) or absolute-form
/// (`http://host/a/b`) target, percent-decoded, without the leading `/`.
fn decode_path<'a>(target: &[u8], out: &'a mut [u8; MAX_TARGET_LEN]) -> Result<&'a [u8], Status> {
    let mut path = target;
    for scheme in [&b"http://"[..], b"https://"] {
        if path.len() >= scheme.len() && path[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &path[scheme.len()..];
            path = rest
                .iter()
                .position(|&b| b == b'/')
                .map_or(&b"/"[..], |i| &rest[i..]);
        }
    }
    if path.first() != Some(&b'/') {
        return Err(Status::BadRequest);
    }
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    let path = &path[1..end];
    let mut n = 0;
    let mut i = 0;
    while i < path.len() {
        let b = match path[i] {
            b'%' => {
                let hex = path.get(i + 1..i + 3).ok_or(Status::BadRequest)?;
                let hi = (hex[0] as char).to_digit(16).ok_or(Status::BadRequest)?;
                let lo = (hex[1] as char).to_digit(16).ok_or(Status::BadRequest)?;
                i += 3;
                (hi * 16 + lo) as u8
            }
            b => {
                i += 1;
                b
            }
        };
        if b == 0 {
            return Err(Status::BadRequest);
        }
        out[n] = b;
        n += 1;
    }
    Ok(&out[..n])
}

/// The entity tags a precondition header lists, as written (quoted).
fn tags(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

fn is_tag(written: &[u8], version: &Version, weak_ok: bool) -> bool {
    let written = match written.strip_prefix(b"W/") {
        Some(weak) if weak_ok => weak,
        Some(_) => return false,
        None => written,
    };
    written.len() == version.etag().len() + 2
        && written.first() == Some(&b'"')
        && written.last() == Some(&b'"')
        && &written[1..written.len() - 1] == version.etag()
}

fn date(value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?;
    httpdate::parse_http_date(text.trim()).ok()
}

/// Seconds resolution, as HTTP dates have.
fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 9110 §13.2.2, in its order: `If-Match` or else
/// `If-Unmodified-Since` (412: a resumed download never mixes versions),
/// then `If-None-Match` or else `If-Modified-Since` (304).
pub fn precondition(head: &Head<'_>, version: &Version) -> Option<Status> {
    if let Some(value) = head.header("if-match") {
        if value.trim_ascii() != b"*" && !tags(value).any(|t| is_tag(t, version, false)) {
            return Some(Status::PreconditionFailed);
        }
    } else if let Some(since) = head.header("if-unmodified-since").and_then(date)
        && secs(version.modified) > secs(since)
    {
        return Some(Status::PreconditionFailed);
    }
    if let Some(value) = head.header("if-none-match") {
        if value.trim_ascii() == b"*" || tags(value).any(|t| is_tag(t, version, true)) {
            return Some(Status::NotModified);
        }
    } else if let Some(since) = head.header("if-modified-since").and_then(date)
        && secs(version.modified) <= secs(since)
    {
        return Some(Status::NotModified);
    }
    None
}

/// The part of the file a GET asks for: its Range, unless an `If-Range`
/// names another version (then the whole file).
pub fn wanted(head: &Head<'_>, version: &Version) -> Resolved {
    let spec = head.header("range").and_then(range::parse);
    if spec.is_some()
        && let Some(cond) = head.header("if-range")
    {
        let same = if cond.trim_ascii().starts_with(b"\"") {
            is_tag(cond.trim_ascii(), version, false)
        } else {
            date(cond).is_some_and(|d| secs(d) == secs(version.modified))
        };
        if !same {
            return Resolved::Whole;
        }
    }
    range::resolve(spec, version.len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn head(raw: &str) -> Head<'_> {
        Head::parse(raw.as_bytes()).unwrap().unwrap()
    }

    fn path_of(target: &str) -> Result<Vec<u8>, Status> {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let h = Head::parse(raw.as_bytes())
            .map_err(|_| Status::BadRequest)?
            .unwrap();
        let mut buf = [0u8; MAX_TARGET_LEN];
        interpret(&h, &mut buf).map(|r| r.path.to_vec())
    }

    #[test]
    fn paths_are_decoded_and_bad_ones_refused() {
        assert_eq!(path_of("/ipxe.efi").unwrap(), b"ipxe.efi");
        assert_eq!(path_of("/a%20b/c?x=1#f").unwrap(), b"a b/c");
        assert_eq!(
            path_of("http://10.0.0.1:8080/boot/vmlinuz").unwrap(),
            b"boot/vmlinuz"
        );
        assert_eq!(path_of("HTTP://host").unwrap(), b"");
        // Encoded dots decode to dots: the root resolver refuses `..`.
        assert_eq!(path_of("/%2e%2e/etc/passwd").unwrap(), b"../etc/passwd");
        assert_eq!(path_of("/a%00b"), Err(Status::BadRequest));
        assert_eq!(path_of("/a%zz"), Err(Status::BadRequest));
        assert_eq!(path_of("/a%2"), Err(Status::BadRequest));
        assert_eq!(path_of("*"), Err(Status::BadRequest));
        assert_eq!(
            path_of(&format!("/{}", "a".repeat(MAX_TARGET_LEN))),
            Err(Status::UriTooLong)
        );
    }

    #[test]
    fn methods_hosts_bodies_and_keep_alive() {
        let mut buf = [0u8; MAX_TARGET_LEN];
        let check = |raw: &str| {
            let mut buf = [0u8; MAX_TARGET_LEN];
            interpret(&head(raw), &mut buf).map(|r| (r.method, r.keep_alive))
        };
        assert_eq!(
            check("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok((Method::Head, true))
        );
        assert_eq!(
            check("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
            Ok((Method::Get, false))
        );
        assert_eq!(check("GET / HTTP/1.0\r\n\r\n"), Ok((Method::Get, false)));
        assert_eq!(
            check("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
            Ok((Method::Get, true))
        );
        assert_eq!(
            check("POST / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(Status::MethodNotAllowed)
        );
        assert_eq!(
            check("GET / HTTP/1.1\r\n\r\n"),
            Err(Status::BadRequest),
            "no Host"
        );
        assert_eq!(
            check("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"),
            Err(Status::BadRequest)
        );
        assert_eq!(
            check("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(Status::BadRequest)
        );
        assert!(
            interpret(
                &head("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
                &mut buf
            )
            .is_ok()
        );
    }

    #[test]
    fn preconditions_and_if_range() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let v = Version::new(7, 100, 1_700_000_000_000_000_000, t);
        let tag = format!("\"{}\"", std::str::from_utf8(v.etag()).unwrap());
        let date = httpdate::fmt_http_date(t);
        let earlier = httpdate::fmt_http_date(t - Duration::from_secs(60));
        let p = |extra: String| {
            precondition(
                &head(&format!("GET / HTTP/1.1\r\nHost: a\r\n{extra}\r\n")),
                &v,
            )
        };
        assert_eq!(p(String::new()), None);
        assert_eq!(p(format!("If-Match: {tag}\r\n")), None);
        assert_eq!(p(format!("If-Match: \"other\", {tag}\r\n")), None);
        assert_eq!(p("If-Match: *\r\n".into()), None);
        assert_eq!(
            p("If-Match: \"other\"\r\n".into()),
            Some(Status::PreconditionFailed)
        );
        assert_eq!(
            p(format!("If-Match: W/{tag}\r\n")),
            Some(Status::PreconditionFailed),
            "strong comparison"
        );
        assert_eq!(p(format!("If-Unmodified-Since: {date}\r\n")), None);
        assert_eq!(
            p(format!("If-Unmodified-Since: {earlier}\r\n")),
            Some(Status::PreconditionFailed)
        );
        assert_eq!(
            p(format!("If-None-Match: W/{tag}\r\n")),
            Some(Status::NotModified)
        );
        assert_eq!(
            p(format!("If-Modified-Since: {date}\r\n")),
            Some(Status::NotModified)
        );
        assert_eq!(p(format!("If-Modified-Since: {earlier}\r\n")), None);

        let w = |extra: String| {
            wanted(
                &head(&format!(
                    "GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=10-19\r\n{extra}\r\n"
                )),
                &v,
            )
        };
        let part = Resolved::Part { start: 10, len: 10 };
        assert_eq!(w(String::new()), part);
        assert_eq!(w(format!("If-Range: {tag}\r\n")), part);
        assert_eq!(w("If-Range: \"old\"\r\n".into()), Resolved::Whole);
        assert_eq!(w(format!("If-Range: {date}\r\n")), part);
        assert_eq!(w(format!("If-Range: {earlier}\r\n")), Resolved::Whole);
    }
}

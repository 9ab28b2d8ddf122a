//! Response heads written into a caller's buffer: status line, the headers
//! firmware needs (`Content-Length` always, HEAD included; `Content-Type`
//! by extension, `application/efi` for `.efi`; validators), and the short
//! bodies of error answers, which never name a server path.

use std::io::Write as _;
use std::time::SystemTime;

/// Room for any head this server writes.
pub const MAX_HEAD_LEN: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    PartialContent,
    NotModified,
    BadRequest,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    PreconditionFailed,
    UriTooLong,
    RangeNotSatisfiable,
    HeadersTooLarge,
    ServiceUnavailable,
    VersionNotSupported,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::PartialContent => 206,
            Status::NotModified => 304,
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::PreconditionFailed => 412,
            Status::UriTooLong => 414,
            Status::RangeNotSatisfiable => 416,
            Status::HeadersTooLarge => 431,
            Status::ServiceUnavailable => 503,
            Status::VersionNotSupported => 505,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::PartialContent => "Partial Content",
            Status::NotModified => "Not Modified",
            Status::BadRequest => "Bad Request",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::PreconditionFailed => "Precondition Failed",
            Status::UriTooLong => "URI Too Long",
            Status::RangeNotSatisfiable => "Range Not Satisfiable",
            Status::HeadersTooLarge => "Request Header Fields Too Large",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// The media type of a file, by its extension.
pub fn content_type(path: &[u8]) -> &'static str {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let ext = match name.iter().rposition(|&b| b == b'.') {
        Some(dot) => &name[dot + 1..],
        None => return "application/octet-stream",
    };
    const TYPES: &[(&str, &str)] = &[
        // UEFI's HTTP boot refuses an image whose type it cannot tell.
        ("efi", "application/efi"),
        ("iso", "application/x-iso9660-image"),
        ("img", "application/octet-stream"),
        ("ipxe", "text/plain; charset=utf-8"),
        ("cfg", "text/plain; charset=utf-8"),
        ("conf", "text/plain; charset=utf-8"),
        ("txt", "text/plain; charset=utf-8"),
        ("sh", "text/plain; charset=utf-8"),
        ("json", "application/json"),
        ("html", "text/html; charset=utf-8"),
        ("gz", "application/gzip"),
        ("xz", "application/x-xz"),
        ("zst", "application/zstd"),
        ("tar", "application/x-tar"),
    ];
    TYPES
        .iter()
        .find(|(e, _)| ext.eq_ignore_ascii_case(e.as_bytes()))
        .map_or("application/octet-stream", |(_, t)| t)
}

/// One version of a file, as validators show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub len: u64,
    pub modified: SystemTime,
    /// Strong entity tag, without quotes: changes whenever the bytes can.
    pub etag: [u8; 48],
    pub etag_len: usize,
}

impl Version {
    /// From the file's inode, size and modification time in nanoseconds.
    pub fn new(ino: u64, len: u64, mtime_ns: i128, modified: SystemTime) -> Version {
        let mut etag = [0u8; 48];
        let mut w = &mut etag[..];
        let _ = write!(w, "{ino:x}-{len:x}-{:x}", mtime_ns as u128);
        let etag_len = 48 - w.len();
        Version {
            len,
            modified,
            etag,
            etag_len,
        }
    }

    pub fn etag(&self) -> &[u8] {
        &self.etag[..self.etag_len]
    }
}

/// What a response head says.
#[derive(Debug, Clone, Copy)]
pub struct HeadSpec<'a> {
    pub status: Status,
    /// The body's length (for HEAD, what GET would send).
    pub content_length: u64,
    pub content_type: &'a str,
    /// Validators of the file served.
    pub version: Option<&'a Version>,
    /// `bytes start-end/len` for 206, `bytes */len` for 416.
    pub content_range: Option<(u64, u64, u64)>,
    pub unsatisfied_len: Option<u64>,
    pub close: bool,
    pub retry_after: Option<u32>,
}

/// Writes a head into `out` (give it [`MAX_HEAD_LEN`] bytes); returns its
/// length. A head that does not fit (impossible with the fields above in
/// that room) is cut, which callers never see.
pub fn write_head(spec: &HeadSpec<'_>, out: &mut [u8]) -> usize {
    let room = out.len();
    let mut w = &mut out[..];
    let _ = write!(
        w,
        "HTTP/1.1 {} {}\r\nServer: rackboot\r\nContent-Length: {}\r\n",
        spec.status.code(),
        spec.status.reason(),
        spec.content_length
    );
    let _ = write!(w, "Content-Type: {}\r\n", spec.content_type);
    if let Some(v) = spec.version {
        let _ = w.write_all(b"ETag: \"");
        let _ = w.write_all(v.etag());
        let _ = write!(
            w,
            "\"\r\nLast-Modified: {}\r\nAccept-Ranges: bytes\r\n",
            httpdate::HttpDate::from(v.modified)
        );
    }
    if let Some((start, end, len)) = spec.content_range {
        let _ = write!(w, "Content-Range: bytes {start}-{end}/{len}\r\n");
    }
    if let Some(len) = spec.unsatisfied_len {
        let _ = write!(w, "Content-Range: bytes */{len}\r\n");
    }
    if spec.status == Status::MethodNotAllowed {
        let _ = w.write_all(b"Allow: GET, HEAD\r\n");
    }
    if let Some(seconds) = spec.retry_after {
        let _ = write!(w, "Retry-After: {seconds}\r\n");
    }
    let _ = w.write_all(if spec.close {
        b"Connection: close\r\n\r\n"
    } else {
        b"Connection: keep-alive\r\n\r\n"
    });
    room - w.len()
}

/// The body of an error answer: its status line in words.
pub fn error_body(status: Status) -> &'static str {
    match status {
        Status::BadRequest => "400 Bad Request\n",
        Status::Forbidden => "403 Forbidden\n",
        Status::NotFound => "404 Not Found\n",
        Status::MethodNotAllowed => "405 Method Not Allowed\n",
        Status::PreconditionFailed => "412 Precondition Failed\n",
        Status::UriTooLong => "414 URI Too Long\n",
        Status::RangeNotSatisfiable => "416 Range Not Satisfiable\n",
        Status::HeadersTooLarge => "431 Request Header Fields Too Large\n",
        Status::ServiceUnavailable => "503 Service Unavailable, retry shortly\n",
        Status::VersionNotSupported => "505 HTTP Version Not Supported\n",
        Status::Ok | Status::PartialContent | Status::NotModified => "",
    }
}

/// A complete 503 answer for a connection over the cap (written once,
/// sent as is, then the connection is closed).
pub fn overloaded(out: &mut [u8; MAX_HEAD_LEN + 64]) -> usize {
    let body = error_body(Status::ServiceUnavailable);
    let n = write_head(
        &HeadSpec {
            status: Status::ServiceUnavailable,
            content_length: body.len() as u64,
            content_type: "text/plain; charset=utf-8",
            version: None,
            content_range: None,
            unsatisfied_len: None,
            close: true,
            retry_after: Some(1),
        },
        &mut out[..MAX_HEAD_LEN],
    );
    out[n..n + body.len()].copy_from_slice(body.as_bytes());
    n + body.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn types_by_extension() {
        assert_eq!(content_type(b"/EFI/BOOT/BOOTX64.EFI"), "application/efi");
        assert_eq!(content_type(b"/boot.ipxe"), "text/plain; charset=utf-8");
        assert_eq!(content_type(b"/vmlinuz"), "application/octet-stream");
        assert_eq!(content_type(b"/dir.efi/initrd"), "application/octet-stream");
    }

    #[test]
    fn a_206_head_has_every_field() {
        let v = Version::new(
            0x1234,
            1000,
            1_700_000_000_000_000_000,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        let mut out = [0u8; MAX_HEAD_LEN];
        let n = write_head(
            &HeadSpec {
                status: Status::PartialContent,
                content_length: 100,
                content_type: content_type(b"/a.efi"),
                version: Some(&v),
                content_range: Some((0, 99, 1000)),
                unsatisfied_len: None,
                close: false,
                retry_after: None,
            },
            &mut out,
        );
        let text = std::str::from_utf8(&out[..n]).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 206 Partial Content\r\n"),
            "{text}"
        );
        for want in [
            "Content-Length: 100\r\n",
            "Content-Type: application/efi\r\n",
            "ETag: \"1234-3e8-",
            "Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\n",
            "Content-Range: bytes 0-99/1000\r\n",
            "Connection: keep-alive\r\n\r\n",
        ] {
            assert!(text.contains(want), "{want:?} in {text}");
        }
        let mut buf = [0u8; MAX_HEAD_LEN + 64];
        let n = overloaded(&mut buf);
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 "));
        assert!(
            text.contains("Retry-After: 1\r\n")
                && text.ends_with("\r\n\r\n503 Service Unavailable, retry shortly\n")
        );
    }
}

//! HTTP/1.x request heads (RFC 9112): a checked view over the bytes a
//! client sent, parsed in place by `httparse` (the ecosystem's zero-copy
//! HTTP/1 parser) into a fixed array of headers. Bounded: a head longer
//! than the caller's buffer or with more than [`MAX_HEADERS`] headers is an
//! error the caller answers with 431, never an allocation.

/// Most headers a request may carry (firmware sends fewer than ten).
pub const MAX_HEADERS: usize = 32;

/// Why a head could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("malformed request head")]
    Malformed,
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    #[error("not HTTP/1.0 or HTTP/1.1")]
    Version,
}

/// A complete request head.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub method: &'a [u8],
    /// The request target as sent (origin or absolute form).
    pub target: &'a [u8],
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    headers: [(&'a [u8], &'a [u8]); MAX_HEADERS],
    header_count: usize,
    /// Bytes the head took, its final empty line included.
    pub len: usize,
}

impl<'a> Head<'a> {
    /// Parses the head at the start of `bytes`: `Ok(None)` while it is
    /// incomplete.
    pub fn parse(bytes: &'a [u8]) -> Result<Option<Head<'a>>, Error> {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut slots);
        let len = match request.parse(bytes) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(Error::TooManyHeaders),
            Err(httparse::Error::Version) => return Err(Error::Version),
            Err(_) => return Err(Error::Malformed),
        };
        let (Some(method), Some(target), Some(minor_version)) =
            (request.method, request.path, request.version)
        else {
            return Err(Error::Malformed);
        };
        let mut headers: [(&[u8], &[u8]); MAX_HEADERS] = [(&[], &[]); MAX_HEADERS];
        let mut header_count = 0;
        for (slot, h) in headers.iter_mut().zip(request.headers.iter()) {
            *slot = (h.name.as_bytes(), h.value);
            header_count += 1;
        }
        Ok(Some(Head {
            method: method.as_bytes(),
            target: target.as_bytes(),
            minor_version,
            headers,
            header_count,
            len,
        }))
    }

    /// Every header, in order: (name, value).
    pub fn headers(&self) -> &[(&'a [u8], &'a [u8])] {
        &self.headers[..self.header_count]
    }

    /// The value of the first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers()
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
    }

    /// How many headers are named `name`.
    pub fn count(&self, name: &str) -> usize {
        self.headers()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .count()
    }

    /// Whether a comma-separated header `name` lists `token`.
    pub fn lists(&self, name: &str, token: &str) -> bool {
        self.headers()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .flat_map(|(_, v)| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_parses_in_place_and_partial_is_not_an_error() {
        let raw = b"GET /ipxe.efi HTTP/1.1\r\nHost: 10.0.0.1\r\nConnection: Keep-Alive, TE\r\nRange: bytes=0-99\r\n\r\nGET /next";
        let head = Head::parse(raw).unwrap().unwrap();
        assert_eq!(head.method, b"GET");
        assert_eq!(head.target, b"/ipxe.efi");
        assert_eq!(head.minor_version, 1);
        assert_eq!(head.header("range"), Some(&b"bytes=0-99"[..]));
        assert!(head.lists("connection", "keep-alive"));
        assert!(!head.lists("connection", "close"));
        assert_eq!(&raw[head.len..], b"GET /next");
        for cut in 0..head.len {
            assert!(Head::parse(&raw[..cut]).unwrap().is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn bad_heads_are_errors() {
        assert_eq!(
            Head::parse(b"GET / HTTP/2.0\r\n\r\n").unwrap_err(),
            Error::Version
        );
        assert_eq!(
            Head::parse(b"GET\0/ HTTP/1.1\r\n\r\n").unwrap_err(),
            Error::Malformed
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(Head::parse(&many).unwrap_err(), Error::TooManyHeaders);
    }
}

//! `Range: bytes=...` (RFC 9110 §14): one range is served as 206 Partial
//! Content; several ranges, other units or a malformed header are ignored
//! (the whole file, 200), as the RFC allows; a range that selects nothing
//! of the file is 416.

/// One byte range as the client wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// `first-` or `first-last` (inclusive).
    From { first: u64, last: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// What a Range header asks of a file of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// No (usable) range: the whole file.
    Whole,
    /// Bytes `start..start + len`.
    Part { start: u64, len: u64 },
    /// Nothing of the file: 416.
    Unsatisfiable,
}

/// Parses a Range header value; `None` for anything but one byte range.
pub fn parse(value: &[u8]) -> Option<Spec> {
    let value = value.trim_ascii();
    let (unit, set) = split_once(value, b'=')?;
    if !unit.trim_ascii().eq_ignore_ascii_case(b"bytes") || set.contains(&b',') {
        return None;
    }
    let (first, last) = split_once(set.trim_ascii(), b'-')?;
    let (first, last) = (first.trim_ascii(), last.trim_ascii());
    if first.is_empty() {
        return Some(Spec::Suffix(number(last)?));
    }
    let first = number(first)?;
    if last.is_empty() {
        return Some(Spec::From { first, last: None });
    }
    let last = number(last)?;
    (last >= first).then_some(Spec::From {
        first,
        last: Some(last),
    })
}

/// What `spec` selects of a file of `len` bytes.
pub fn resolve(spec: Option<Spec>, len: u64) -> Resolved {
    match spec {
        None => Resolved::Whole,
        Some(Spec::Suffix(0)) => Resolved::Unsatisfiable,
        Some(Spec::Suffix(_)) if len == 0 => Resolved::Unsatisfiable,
        Some(Spec::Suffix(n)) => {
            let n = n.min(len);
            Resolved::Part {
                start: len - n,
                len: n,
            }
        }
        Some(Spec::From { first, .. }) if first >= len => Resolved::Unsatisfiable,
        Some(Spec::From { first, last }) => {
            let last = last.map_or(len - 1, |l| l.min(len - 1));
            Resolved::Part {
                start: first,
                len: last - first + 1,
            }
        }
    }
}

fn split_once(bytes: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().position(|&b| b == at)?;
    Some((&bytes[..i], &bytes[i + 1..]))
}

/// A decimal number that fits u64 (no sign).
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(value: &str, len: u64) -> Resolved {
        resolve(parse(value.as_bytes()), len)
    }

    #[test]
    fn edge_cases() {
        let part = |start, len| Resolved::Part { start, len };
        assert_eq!(r("bytes=0-0", 10), part(0, 1));
        assert_eq!(r("bytes=0-", 10), part(0, 10));
        assert_eq!(r("bytes=2-5", 10), part(2, 4));
        assert_eq!(r("bytes=5-500", 10), part(5, 5), "last clamped");
        assert_eq!(r("bytes=-3", 10), part(7, 3));
        assert_eq!(
            r("bytes=-500", 10),
            part(0, 10),
            "suffix longer than the file"
        );
        assert_eq!(r("Bytes = 1 - 2 ", 10), part(1, 2));
        assert_eq!(r("bytes=10-", 10), Resolved::Unsatisfiable, "past the end");
        assert_eq!(r("bytes=-0", 10), Resolved::Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Resolved::Unsatisfiable, "empty file");
        assert_eq!(r("bytes=-5", 0), Resolved::Unsatisfiable);
        // Ignored: the whole file.
        for ignored in [
            "bytes=5-2",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
            "",
        ] {
            assert_eq!(r(ignored, 10), Resolved::Whole, "{ignored:?}");
        }
        assert_eq!(
            r("bytes=18446744073709551614-", u64::MAX),
            part(u64::MAX - 1, 1)
        );
    }
}

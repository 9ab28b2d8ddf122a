//! TFTP packets (RFC 1350) and their options (RFC 2347), viewed in place.
//!
//! `Packet::parse` borrows the received bytes and never allocates; the
//! `emit_*` functions write into a caller-owned buffer and return the length.

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Largest block size RFC 2348 allows: 65535 − 20 (IP) − 8 (UDP) − 4 (TFTP) + ...
pub const MAX_BLKSIZE: u16 = 65464;
/// Bytes before the payload of a DATA packet: opcode and block number.
pub const DATA_HEADER_LEN: usize = 4;
/// Longest file name or option string we accept; longer ones are refused.
pub const MAX_STRING_LEN: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Opcode {
    Rrq = 1,
    Wrq = 2,
    Data = 3,
    Ack = 4,
    Error = 5,
    Oack = 6,
}

impl Opcode {
    fn from_u16(v: u16) -> Option<Opcode> {
        Some(match v {
            1 => Opcode::Rrq,
            2 => Opcode::Wrq,
            3 => Opcode::Data,
            4 => Opcode::Ack,
            5 => Opcode::Error,
            6 => Opcode::Oack,
            _ => return None,
        })
    }
}

/// The fixed prefix of DATA and ACK (and ERROR, where `block` is the code).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockHeader {
    pub opcode: U16,
    pub block: U16,
}
const _: () = assert!(core::mem::size_of::<BlockHeader>() == DATA_HEADER_LEN);

/// TFTP error codes (RFC 1350 §5, RFC 2347 for 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    DiskFull = 3,
    IllegalOperation = 4,
    UnknownTid = 5,
    FileExists = 6,
    NoSuchUser = 7,
    OptionRefused = 8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("packet shorter than its fixed header")]
    Truncated,
    #[error("unknown opcode {0}")]
    BadOpcode(u16),
    #[error("string not terminated by NUL")]
    Unterminated,
    #[error("string longer than {MAX_STRING_LEN} bytes")]
    StringTooLong,
    #[error("request without a file name")]
    EmptyFilename,
    #[error("unknown transfer mode")]
    BadMode,
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// Transfer mode of a request. `mail` is obsolete and refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Octet,
    Netascii,
}

/// A request (RRQ or WRQ) viewed in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub filename: &'a [u8],
    pub mode: Mode,
    pub options: Options<'a>,
}

/// One parsed TFTP packet, borrowing the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    Rrq(Request<'a>),
    Wrq(Request<'a>),
    Data { block: u16, payload: &'a [u8] },
    Ack { block: u16 },
    Error { code: u16, message: &'a [u8] },
    Oack(Options<'a>),
}

impl<'a> Packet<'a> {
    /// Parses one datagram. Never panics, never allocates.
    pub fn parse(bytes: &'a [u8]) -> Result<Packet<'a>, Error> {
        let (opcode, rest) = U16::read_from_prefix(bytes).map_err(|_| Error::Truncated)?;
        let opcode = Opcode::from_u16(opcode.get()).ok_or(Error::BadOpcode(opcode.get()))?;
        match opcode {
            Opcode::Rrq => Ok(Packet::Rrq(parse_request(rest)?)),
            Opcode::Wrq => Ok(Packet::Wrq(parse_request(rest)?)),
            Opcode::Data => {
                let (block, payload) = U16::read_from_prefix(rest).map_err(|_| Error::Truncated)?;
                Ok(Packet::Data {
                    block: block.get(),
                    payload,
                })
            }
            Opcode::Ack => {
                // Trailing bytes after the block number are tolerated, as every
                // deployed server does: some clients pad ACKs.
                let (block, _) = U16::read_from_prefix(rest).map_err(|_| Error::Truncated)?;
                Ok(Packet::Ack { block: block.get() })
            }
            Opcode::Error => {
                let (code, rest) = U16::read_from_prefix(rest).map_err(|_| Error::Truncated)?;
                // A missing terminator is common in the wild; take what is there.
                let message = match rest.iter().position(|&b| b == 0) {
                    Some(end) => &rest[..end],
                    None => rest,
                };
                Ok(Packet::Error {
                    code: code.get(),
                    message,
                })
            }
            Opcode::Oack => Ok(Packet::Oack(Options::parse(rest)?)),
        }
    }
}

fn parse_request(bytes: &[u8]) -> Result<Request<'_>, Error> {
    let (filename, rest) = split_string(bytes)?;
    if filename.is_empty() {
        return Err(Error::EmptyFilename);
    }
    let (mode, rest) = split_string(rest)?;
    let mode = if mode.eq_ignore_ascii_case(b"octet") {
        Mode::Octet
    } else if mode.eq_ignore_ascii_case(b"netascii") {
        Mode::Netascii
    } else {
        return Err(Error::BadMode);
    };
    Ok(Request {
        filename,
        mode,
        options: Options::parse(rest)?,
    })
}

/// Splits off one NUL-terminated string.
fn split_string(bytes: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(Error::Unterminated)?;
    if end > MAX_STRING_LEN {
        return Err(Error::StringTooLong);
    }
    Ok((&bytes[..end], &bytes[end + 1..]))
}

/// The option list of a request or OACK: `name\0value\0` pairs, viewed in
/// place. Validated once by `parse`, so iteration cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options<'a> {
    bytes: &'a [u8],
}

impl<'a> Options<'a> {
    /// Checks that the bytes are complete pairs. Trailing garbage after the
    /// last complete pair (some clients pad requests with NULs) is ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Options<'a>, Error> {
        let mut rest = bytes;
        let mut valid = 0;
        while !rest.is_empty() {
            let Ok((name, after_name)) = split_string(rest) else {
                break;
            };
            let Ok((_, after_value)) = split_string(after_name) else {
                break;
            };
            if name.is_empty() {
                break;
            }
            rest = after_value;
            valid = bytes.len() - rest.len();
        }
        Ok(Options {
            bytes: &bytes[..valid],
        })
    }

    pub fn iter(&self) -> OptionIter<'a> {
        OptionIter { rest: self.bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The value of the first option with this name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

pub struct OptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (name, rest) = split_string(self.rest).ok()?;
        let (value, rest) = split_string(rest).ok()?;
        self.rest = rest;
        Some((name, value))
    }
}

/// Parses an ASCII decimal option value; `None` for anything else.
pub fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 20 {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Writes into a caller buffer, tracking the position; every write is
/// bounds-checked so emitters never panic.
pub struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Writer<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        Writer { buf, len: 0 }
    }
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let end = self
            .len
            .checked_add(bytes.len())
            .ok_or(Error::BufferTooSmall)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
    pub fn put_u16(&mut self, v: u16) -> Result<(), Error> {
        self.put(&v.to_be_bytes())
    }
    /// A string and its NUL terminator.
    pub fn put_str(&mut self, s: &[u8]) -> Result<(), Error> {
        self.put(s)?;
        self.put(&[0])
    }
    /// A decimal number as an option value, without allocating.
    pub fn put_decimal(&mut self, v: u64) -> Result<(), Error> {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = v;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.put_str(&digits[i..])
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The 4-byte header that precedes a DATA payload.
pub fn data_header(block: u16) -> [u8; DATA_HEADER_LEN] {
    let h = BlockHeader {
        opcode: U16::new(Opcode::Data as u16),
        block: U16::new(block),
    };
    let mut out = [0u8; DATA_HEADER_LEN];
    out.copy_from_slice(h.as_bytes());
    out
}

pub fn emit_data(buf: &mut [u8], block: u16, payload: &[u8]) -> Result<usize, Error> {
    let mut w = Writer::new(buf);
    w.put(&data_header(block))?;
    w.put(payload)?;
    Ok(w.len())
}

pub fn emit_ack(buf: &mut [u8], block: u16) -> Result<usize, Error> {
    let mut w = Writer::new(buf);
    w.put_u16(Opcode::Ack as u16)?;
    w.put_u16(block)?;
    Ok(w.len())
}

pub fn emit_error(buf: &mut [u8], code: ErrorCode, message: &str) -> Result<usize, Error> {
    let mut w = Writer::new(buf);
    w.put_u16(Opcode::Error as u16)?;
    w.put_u16(code as u16)?;
    w.put_str(message.as_bytes())?;
    Ok(w.len())
}

/// Emits an RRQ or WRQ with the given options (used by tests and the load
/// generator; the server only parses requests).
pub fn emit_request(
    buf: &mut [u8],
    opcode: Opcode,
    filename: &[u8],
    mode: &[u8],
    options: &[(&[u8], &[u8])],
) -> Result<usize, Error> {
    let mut w = Writer::new(buf);
    w.put_u16(opcode as u16)?;
    w.put_str(filename)?;
    w.put_str(mode)?;
    for (name, value) in options {
        w.put_str(name)?;
        w.put_str(value)?;
    }
    Ok(w.len())
}

#[cfg(test)]
#[allow(clippy::octal_escapes)] // "\0" then digits: NUL-separated strings
mod tests {
    use super::*;

    #[test]
    fn parses_rrq_with_options() {
        let mut buf = [0u8; 128];
        let n = emit_request(
            &mut buf,
            Opcode::Rrq,
            b"pxelinux.0",
            b"octet",
            &[(b"blksize", b"1468"), (b"tsize", b"0")],
        )
        .unwrap();
        let Packet::Rrq(req) = Packet::parse(&buf[..n]).unwrap() else {
            panic!("not an RRQ")
        };
        assert_eq!(req.filename, b"pxelinux.0");
        assert_eq!(req.mode, Mode::Octet);
        assert_eq!(req.options.get("BLKSIZE"), Some(&b"1468"[..]));
        assert_eq!(req.options.get("tsize"), Some(&b"0"[..]));
        assert_eq!(req.options.iter().count(), 2);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(Packet::parse(&[]), Err(Error::Truncated));
        assert_eq!(Packet::parse(&[0]), Err(Error::Truncated));
        assert_eq!(Packet::parse(&[0, 9]), Err(Error::BadOpcode(9)));
        assert_eq!(Packet::parse(&[0, 1, b'a']), Err(Error::Unterminated));
        assert_eq!(
            Packet::parse(&[0, 1, 0, b'o', 0]),
            Err(Error::EmptyFilename)
        );
        assert_eq!(Packet::parse(b"\0\x01a\0mail\0"), Err(Error::BadMode));
        assert_eq!(Packet::parse(&[0, 4, 1]), Err(Error::Truncated));
        let mut long = vec![0u8, 1];
        long.extend(std::iter::repeat_n(b'a', MAX_STRING_LEN + 1));
        long.extend_from_slice(b"\0octet\0");
        assert_eq!(Packet::parse(&long), Err(Error::StringTooLong));
    }

    #[test]
    fn tolerates_partial_option_tail() {
        let p = Packet::parse(b"\0\x01f\0octet\0blksize\01024\0tsize").unwrap();
        let Packet::Rrq(req) = p else { panic!() };
        assert_eq!(req.options.iter().count(), 1);
    }

    #[test]
    fn data_ack_error_round_trip() {
        let mut buf = [0u8; 64];
        let n = emit_data(&mut buf, 65535, b"abc").unwrap();
        assert_eq!(
            Packet::parse(&buf[..n]),
            Ok(Packet::Data {
                block: 65535,
                payload: b"abc"
            })
        );
        let n = emit_ack(&mut buf, 7).unwrap();
        assert_eq!(Packet::parse(&buf[..n]), Ok(Packet::Ack { block: 7 }));
        let n = emit_error(&mut buf, ErrorCode::FileNotFound, "File not found").unwrap();
        assert_eq!(
            Packet::parse(&buf[..n]),
            Ok(Packet::Error {
                code: 1,
                message: b"File not found"
            })
        );
        assert_eq!(
            emit_data(&mut buf[..5], 1, b"ab"),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn decimal() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"65464"), Some(65464));
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"12a"), None);
        assert_eq!(parse_decimal(b"-1"), None);
        assert_eq!(parse_decimal(b"99999999999999999999"), None);
        let mut buf = [0u8; 32];
        let mut w = Writer::new(&mut buf);
        w.put_decimal(1234567890123).unwrap();
        assert_eq!(&buf[..14], b"1234567890123\0");
    }
}

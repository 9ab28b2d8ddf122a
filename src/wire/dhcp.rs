//! BOOTP/DHCP (RFC 951, RFC 2131): a checked view over a received packet,
//! a bounds-checked option iterator, and an emitter that writes a reply into a
//! caller-owned buffer.
//!
//! Leniency, decided to match dnsmasq (which firmware is tested against):
//! - options are read until END, the end of the packet, or the first option
//!   whose length runs past the packet, whichever comes first. A missing END
//!   is fine; an overrunning option is dropped with everything after it (and
//!   [`Options::overran`] says so). A packet whose only problem is a
//!   truncated last option is therefore still answered when what we need
//!   came before it.
//! - any number of PAD bytes is accepted (skipping them is linear, no panic).
//! - option overload (52, RFC 2132) is ignored: `sname` and `file` are never
//!   read as options. PXE clients do not use it for the options we read.
//! - a code repeated in several options (RFC 3396 long options) is not
//!   concatenated: [`Packet::option`] returns the first occurrence.

use std::net::Ipv4Addr;

use zerocopy::network_endian::{U16, U32};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Port a DHCP server listens on.
pub const SERVER_PORT: u16 = 67;
/// Port a DHCP client listens on.
pub const CLIENT_PORT: u16 = 68;
/// Port a PXE boot server listens on (PXE 2.1, "proxyDHCP on 4011").
pub const PXE_PORT: u16 = 4011;

/// RFC 1497 magic cookie that starts the options area.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Length of the fixed BOOTP part, before the cookie.
pub const HEADER_LEN: usize = 236;
/// Offset of the first option, after the cookie.
pub const OPTIONS_OFFSET: usize = HEADER_LEN + MAGIC_COOKIE.len();
/// BOOTP's minimum message size; dnsmasq pads its replies up to it and some
/// old PXE ROMs drop anything shorter.
pub const MIN_REPLY_LEN: usize = 300;
/// Largest payload of one option (its length is one byte).
pub const MAX_OPTION_LEN: usize = 255;

/// `op` of a client message.
pub const BOOTREQUEST: u8 = 1;
/// `op` of a server message.
pub const BOOTREPLY: u8 = 2;
/// The broadcast bit of `flags`.
pub const FLAG_BROADCAST: u16 = 0x8000;

/// Option codes this crate reads or writes.
pub mod code {
    pub const PAD: u8 = 0;
    pub const VENDOR_SPECIFIC: u8 = 43;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_LIST: u8 = 55;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const VENDOR_CLASS: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const BOOTFILE_NAME: u8 = 67;
    pub const USER_CLASS: u8 = 77;
    pub const CLIENT_ARCH: u8 = 93;
    pub const CLIENT_NDI: u8 = 94;
    pub const CLIENT_MACHINE_ID: u8 = 97;
    pub const IPXE_ENCAP: u8 = 175;
    pub const END: u8 = 255;
}

/// Values of option 53.
pub mod message_type {
    pub const DISCOVER: u8 = 1;
    pub const OFFER: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const DECLINE: u8 = 4;
    pub const ACK: u8 = 5;
    pub const NAK: u8 = 6;
    pub const RELEASE: u8 = 7;
    pub const INFORM: u8 = 8;
}

/// What can be wrong with a packet we read or a reply we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("shorter than the BOOTP header and magic cookie")]
    Truncated,
    #[error("bad magic cookie")]
    BadCookie,
    #[error("hardware address length {0} exceeds 16")]
    BadHlen(u8),
    #[error("option {code} has a bad length {len}")]
    BadOptionLength { code: u8, len: usize },
    #[error("option {code} does not fit in 255 bytes (needs {len})")]
    OptionTooLong { code: u8, len: usize },
    #[error("name of {len} bytes does not fit in a {field}-byte header field")]
    FieldTooLong { field: usize, len: usize },
    #[error("reply buffer too small")]
    BufferTooSmall,
}

/// The fixed part of a BOOTP message (RFC 951), in wire order.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct Header {
    pub op: u8,
    pub htype: u8,
    pub hlen: u8,
    pub hops: u8,
    pub xid: U32,
    pub secs: U16,
    pub flags: U16,
    pub ciaddr: [u8; 4],
    pub yiaddr: [u8; 4],
    pub siaddr: [u8; 4],
    pub giaddr: [u8; 4],
    pub chaddr: [u8; 16],
    pub sname: [u8; 64],
    pub file: [u8; 128],
}

const _: () = assert!(size_of::<Header>() == HEADER_LEN);

impl Header {
    /// Stores `name` NUL-terminated in `sname`.
    pub fn set_sname(&mut self, name: &[u8]) -> Result<(), Error> {
        copy_nul_terminated(&mut self.sname, name)
    }

    /// Stores `name` NUL-terminated in `file`.
    pub fn set_file(&mut self, name: &[u8]) -> Result<(), Error> {
        copy_nul_terminated(&mut self.file, name)
    }
}

/// Copies `name` into `field`, leaving room for the NUL that buggy PXE ROMs
/// rely on (dnsmasq always terminates these fields for the same reason).
fn copy_nul_terminated(field: &mut [u8], name: &[u8]) -> Result<(), Error> {
    let too_long = Error::FieldTooLong {
        field: field.len(),
        len: name.len(),
    };
    if name.len() >= field.len() {
        return Err(too_long);
    }
    let (text, rest) = field.split_at_mut(name.len());
    text.copy_from_slice(name);
    rest.fill(0);
    Ok(())
}

/// A checked view of a received BOOTP/DHCP message. Once [`Packet::new_checked`]
/// succeeds no accessor can panic.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    header: &'a Header,
    options: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Checks the header length, the cookie and `hlen`. Options are checked
    /// lazily, as they are iterated (see the module docs).
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, Error> {
        let (header, rest) = Header::ref_from_prefix(bytes).map_err(|_| Error::Truncated)?;
        let (cookie, options) = rest
            .split_at_checked(MAGIC_COOKIE.len())
            .ok_or(Error::Truncated)?;
        if cookie != MAGIC_COOKIE {
            return Err(Error::BadCookie);
        }
        if usize::from(header.hlen) > header.chaddr.len() {
            return Err(Error::BadHlen(header.hlen));
        }
        Ok(Packet { header, options })
    }

    pub fn header(&self) -> &'a Header {
        self.header
    }

    pub fn op(&self) -> u8 {
        self.header.op
    }

    pub fn xid(&self) -> u32 {
        self.header.xid.get()
    }

    pub fn flags(&self) -> u16 {
        self.header.flags.get()
    }

    pub fn ciaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.header.ciaddr)
    }

    pub fn yiaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.header.yiaddr)
    }

    pub fn siaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.header.siaddr)
    }

    pub fn giaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.header.giaddr)
    }

    /// The client hardware address, `hlen` bytes (checked to be at most 16).
    pub fn chaddr(&self) -> &'a [u8] {
        let hlen = usize::from(self.header.hlen).min(self.header.chaddr.len());
        &self.header.chaddr[..hlen]
    }

    /// The raw options area, after the cookie.
    pub fn options_bytes(&self) -> &'a [u8] {
        self.options
    }

    pub fn options(&self) -> Options<'a> {
        Options::new(self.options)
    }

    /// The payload of the first option with `code`, if any.
    pub fn option(&self, code: u8) -> Option<&'a [u8]> {
        self.options()
            .find(|&(c, _)| c == code)
            .map(|(_, data)| data)
    }

    /// Option 53, when present with exactly one byte.
    pub fn message_type(&self) -> Option<u8> {
        match self.option(code::MESSAGE_TYPE)? {
            [kind] => Some(*kind),
            _ => None,
        }
    }
}

/// Iterator over `(code, payload)` of a TLV option area (DHCP options, or
/// the sub-options encapsulated in option 43). Skips PAD, stops at END, at
/// the end of the bytes, or before an option that overruns them.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    rest: &'a [u8],
    overran: bool,
}

impl<'a> Options<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Options {
            rest: bytes,
            overran: false,
        }
    }

    /// Whether iteration stopped at an option whose length ran past the end.
    pub fn overran(&self) -> bool {
        self.overran
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.rest.iter().position(|&b| b != code::PAD)?;
        let (&code, after) = self.rest[start..].split_first()?;
        if code == code::END {
            self.rest = &[];
            return None;
        }
        let data = after
            .split_first()
            .and_then(|(&len, body)| body.split_at_checked(usize::from(len)));
        match data {
            Some((data, rest)) => {
                self.rest = rest;
                Some((code, data))
            }
            None => {
                self.overran = true;
                self.rest = &[];
                None
            }
        }
    }
}

/// Writes a BOOTP reply into a caller-owned buffer: the header (kept aside
/// and copied in by [`finish`](Self::finish)), the cookie, options, END, and
/// zero padding up to [`MIN_REPLY_LEN`]. Never allocates, never panics.
pub struct ReplyBuilder<'b> {
    buf: &'b mut [u8],
    header: Header,
    len: usize,
}

impl<'b> ReplyBuilder<'b> {
    /// Starts a reply with `op = BOOTREPLY` and everything else zero. The
    /// buffer must hold at least [`MIN_REPLY_LEN`] bytes.
    pub fn new(buf: &'b mut [u8]) -> Result<Self, Error> {
        if buf.len() < MIN_REPLY_LEN {
            return Err(Error::BufferTooSmall);
        }
        buf[HEADER_LEN..OPTIONS_OFFSET].copy_from_slice(&MAGIC_COOKIE);
        let mut header = Header::new_zeroed();
        header.op = BOOTREPLY;
        Ok(ReplyBuilder {
            buf,
            header,
            len: OPTIONS_OFFSET,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn header_mut(&mut self) -> &mut Header {
        &mut self.header
    }

    /// Appends one option, keeping one byte free for END.
    pub fn push_option(&mut self, code: u8, data: &[u8]) -> Result<(), Error> {
        let len = u8::try_from(data.len()).map_err(|_| Error::OptionTooLong {
            code,
            len: data.len(),
        })?;
        let end = self.len + 2 + data.len();
        // Strictly less: one byte must stay free for END.
        if end >= self.buf.len() {
            return Err(Error::BufferTooSmall);
        }
        let slot = self
            .buf
            .get_mut(self.len..end)
            .ok_or(Error::BufferTooSmall)?;
        let (tag, payload) = slot.split_at_mut(2);
        tag.copy_from_slice(&[code, len]);
        payload.copy_from_slice(data);
        self.len = end;
        Ok(())
    }

    /// Writes the header and END, pads with zeros, and returns the length.
    pub fn finish(self) -> Result<usize, Error> {
        let ReplyBuilder { buf, header, len } = self;
        buf[..HEADER_LEN].copy_from_slice(header.as_bytes());
        // `push_option` always left a byte for END, and `new` checked the
        // buffer holds MIN_REPLY_LEN, so these ranges are in bounds.
        let end_at = buf.get_mut(len).ok_or(Error::BufferTooSmall)?;
        *end_at = code::END;
        let total = (len + 1).max(MIN_REPLY_LEN);
        buf.get_mut(len + 1..total)
            .ok_or(Error::BufferTooSmall)?
            .fill(0);
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal_request(options: &[u8]) -> Vec<u8> {
        let mut header = Header::new_zeroed();
        header.op = BOOTREQUEST;
        header.htype = 1;
        header.hlen = 6;
        header.xid = U32::new(0xdead_beef);
        header.chaddr[..6].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(&MAGIC_COOKIE);
        bytes.extend_from_slice(options);
        bytes
    }

    #[test]
    fn reads_header_fields() {
        let bytes = minimal_request(&[53, 1, 1, 255]);
        let packet = Packet::new_checked(&bytes).unwrap();
        assert_eq!(packet.op(), BOOTREQUEST);
        assert_eq!(packet.xid(), 0xdead_beef);
        assert_eq!(packet.chaddr(), &[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(packet.message_type(), Some(message_type::DISCOVER));
    }

    #[test]
    fn rejects_every_truncation_of_the_fixed_part() {
        let bytes = minimal_request(&[]);
        for len in 0..OPTIONS_OFFSET {
            assert_eq!(
                Packet::new_checked(&bytes[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
        assert!(Packet::new_checked(&bytes[..OPTIONS_OFFSET]).is_ok());
    }

    #[test]
    fn rejects_bad_cookie_and_long_hlen() {
        let mut bytes = minimal_request(&[255]);
        bytes[HEADER_LEN] = 0;
        assert_eq!(Packet::new_checked(&bytes).unwrap_err(), Error::BadCookie);

        let mut bytes = minimal_request(&[255]);
        bytes[2] = 17;
        assert_eq!(Packet::new_checked(&bytes).unwrap_err(), Error::BadHlen(17));
        bytes[2] = 16;
        assert_eq!(Packet::new_checked(&bytes).unwrap().chaddr().len(), 16);
    }

    #[test]
    fn options_skip_pad_and_stop_at_end() {
        let bytes = minimal_request(&[0, 0, 53, 1, 3, 0, 60, 2, b'a', b'b', 255, 61, 1, 9]);
        let packet = Packet::new_checked(&bytes).unwrap();
        let found: Vec<_> = packet.options().collect();
        assert_eq!(found, vec![(53, &[3][..]), (60, &b"ab"[..])]);
        assert_eq!(packet.option(61), None, "options after END are not read");
    }

    #[test]
    fn options_without_end_run_to_the_packet_end() {
        let bytes = minimal_request(&[53, 1, 1, 60, 0]);
        let packet = Packet::new_checked(&bytes).unwrap();
        assert_eq!(packet.option(60), Some(&[][..]));
        assert!(!packet.options().overran());
    }

    #[test]
    fn overrunning_option_ends_iteration() {
        for tail in [&[60u8, 9, b'P'][..], &[60], &[60, 255]] {
            let mut options = vec![53, 1, 1];
            options.extend_from_slice(tail);
            let bytes = minimal_request(&options);
            let packet = Packet::new_checked(&bytes).unwrap();
            let mut iter = packet.options();
            assert_eq!(iter.next(), Some((53, &[1][..])));
            assert_eq!(iter.next(), None);
            assert!(iter.overran(), "tail {tail:?}");
            assert_eq!(packet.option(60), None);
        }
    }

    #[test]
    fn long_padding_is_only_slow() {
        let mut options = vec![0; 1500];
        options.extend_from_slice(&[53, 1, 1, 255]);
        let bytes = minimal_request(&options);
        let packet = Packet::new_checked(&bytes).unwrap();
        assert_eq!(packet.message_type(), Some(1));
        let bytes = minimal_request(&[0; 1500]);
        assert_eq!(Packet::new_checked(&bytes).unwrap().options().count(), 0);
    }

    #[test]
    fn builder_pads_to_bootp_minimum() {
        let mut buf = [0xAA; 600];
        let mut reply = ReplyBuilder::new(&mut buf).unwrap();
        reply.header_mut().xid = U32::new(7);
        reply.push_option(53, &[2]).unwrap();
        let len = reply.finish().unwrap();
        assert_eq!(len, MIN_REPLY_LEN);
        assert_eq!(buf[0], BOOTREPLY);
        assert_eq!(&buf[HEADER_LEN..OPTIONS_OFFSET], &MAGIC_COOKIE);
        assert_eq!(&buf[OPTIONS_OFFSET..OPTIONS_OFFSET + 4], &[53, 1, 2, 255]);
        assert!(buf[OPTIONS_OFFSET + 4..len].iter().all(|&b| b == 0));
        let packet = Packet::new_checked(&buf[..len]).unwrap();
        assert_eq!(packet.xid(), 7);
        assert_eq!(packet.message_type(), Some(message_type::OFFER));
    }

    #[test]
    fn builder_grows_past_minimum_and_reports_full_buffers() {
        assert_eq!(
            ReplyBuilder::new(&mut [0; 299]).err(),
            Some(Error::BufferTooSmall)
        );

        let mut buf = [0; 600];
        let mut reply = ReplyBuilder::new(&mut buf).unwrap();
        reply.push_option(43, &[1; 255]).unwrap();
        assert_eq!(
            reply.push_option(43, &[1; 256]),
            Err(Error::OptionTooLong { code: 43, len: 256 })
        );
        assert_eq!(reply.finish().unwrap(), OPTIONS_OFFSET + 257 + 1);

        let mut buf = [0; 300];
        let mut reply = ReplyBuilder::new(&mut buf).unwrap();
        // 240 + 2 + 57 = 299 leaves exactly the END byte.
        reply.push_option(1, &[0; 57]).unwrap();
        assert_eq!(reply.push_option(2, &[]), Err(Error::BufferTooSmall));
        assert_eq!(reply.finish().unwrap(), 300);
        assert_eq!(buf[299], 255);
    }

    #[test]
    fn header_names_keep_a_terminating_nul() {
        let mut header = Header::new_zeroed();
        header.set_file(&[b'x'; 127]).unwrap();
        assert_eq!(header.file[127], 0);
        assert_eq!(
            header.set_file(&[b'x'; 128]),
            Err(Error::FieldTooLong {
                field: 128,
                len: 128
            })
        );
        header.set_sname(b"10.0.0.1").unwrap();
        assert_eq!(&header.sname[..9], b"10.0.0.1\0");
    }
}

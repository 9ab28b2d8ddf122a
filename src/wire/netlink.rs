//! rtnetlink (RFC 3549, linux/rtnetlink.h): a checked view over the link
//! and IPv4 address messages the kernel sends on a `NETLINK_ROUTE` socket,
//! and an emitter for the dump requests that list them.
//!
//! A datagram holds one or more messages, each a 16-byte `nlmsghdr` and a
//! body padded to 4 bytes; a link or address body is a fixed header then
//! attributes (`rtattr`: length, type, value, padded to 4 bytes). Netlink
//! speaks the host's byte order. Only what the interface table needs is
//! read: a link's index, name and MTU, an address's interface, IPv4 value
//! and prefix length. Anything else (other message types, other families,
//! unknown attributes) is skipped; anything malformed ends the datagram
//! with an error, never a panic.

use std::net::Ipv4Addr;

use zerocopy::native_endian::{I32, U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `nlmsg_type` values read or written here.
pub mod kind {
    pub const ERROR: u16 = 2;
    pub const DONE: u16 = 3;
    pub const NEWLINK: u16 = 16;
    pub const DELLINK: u16 = 17;
    pub const GETLINK: u16 = 18;
    pub const NEWADDR: u16 = 20;
    pub const DELADDR: u16 = 21;
    pub const GETADDR: u16 = 22;
}

/// `nlmsg_flags` of a dump request.
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;

/// Multicast groups (the bind mask of `sockaddr_nl`) for link changes and
/// IPv4 address changes.
pub const RTMGRP_LINK: u32 = 0x1;
pub const RTMGRP_IPV4_IFADDR: u32 = 0x10;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;

const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

/// Longest interface name, without its terminating NUL (IFNAMSIZ - 1).
pub const MAX_NAME_LEN: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("message header cut short")]
    ShortHeader,
    #[error("message length {0} outside the datagram")]
    BadLength(u32),
    #[error("{0} body cut short")]
    ShortBody(&'static str),
    #[error("attribute length {0} outside its message")]
    BadAttribute(u16),
    #[error("the kernel answered error {0}")]
    Kernel(i32),
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
struct Header {
    len: U32,
    kind: U16,
    flags: U16,
    seq: U32,
    pid: U32,
}
const HEADER_LEN: usize = size_of::<Header>();

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
struct LinkHeader {
    family: u8,
    pad: u8,
    link_type: U16,
    index: I32,
    flags: U32,
    change: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
struct AddrHeader {
    family: u8,
    prefix_len: u8,
    flags: u8,
    scope: u8,
    index: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
struct AttrHeader {
    len: U16,
    kind: U16,
}

/// `rtgenmsg` padded to 4 bytes: the body of a dump request.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
struct DumpRequest {
    header: Header,
    family: u8,
    pad: [u8; 3],
}

/// Length of a dump request.
pub const DUMP_REQUEST_LEN: usize = size_of::<DumpRequest>();

const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// An interface name, inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Name {
    bytes: [u8; MAX_NAME_LEN],
    len: u8,
}

impl Name {
    pub fn new(name: &[u8]) -> Name {
        let name = name.split(|&b| b == 0).next().unwrap_or(&[]);
        let len = name.len().min(MAX_NAME_LEN);
        let mut bytes = [0u8; MAX_NAME_LEN];
        bytes[..len].copy_from_slice(&name[..len]);
        Name {
            bytes,
            len: len as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// A link (network interface) as a NEWLINK message describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    /// Absent from some change notifications.
    pub name: Option<Name>,
    pub mtu: Option<u32>,
}

/// An IPv4 address of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
}

/// One message of a datagram, as far as the interface table cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    NewLink(Link),
    DelLink(u32),
    NewAddr(Addr),
    DelAddr(Addr),
    /// The end of a dump.
    Done,
    /// Anything else: other types, other families, acknowledgements.
    Other,
}

/// The messages of one received datagram, in order.
pub fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram }
}

pub struct Messages<'a> {
    rest: &'a [u8],
}

impl Iterator for Messages<'_> {
    type Item = Result<Event, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = next_message(self.rest);
        match result {
            Ok((event, used)) => {
                self.rest = self.rest.get(used..).unwrap_or(&[]);
                Some(Ok(event))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// Reads the message at the start of `bytes`: its event and the bytes it
/// takes (padding included).
fn next_message(bytes: &[u8]) -> Result<(Event, usize), Error> {
    let (header, _) = Header::read_from_prefix(bytes).map_err(|_| Error::ShortHeader)?;
    let len = header.len.get();
    let end = usize::try_from(len).map_err(|_| Error::BadLength(len))?;
    if end < HEADER_LEN || end > bytes.len() {
        return Err(Error::BadLength(len));
    }
    let body = &bytes[HEADER_LEN..end];
    let used = align4(end).min(bytes.len());
    let event = match header.kind.get() {
        kind::NEWLINK | kind::DELLINK => {
            let (link, attrs) =
                LinkHeader::ref_from_prefix(body).map_err(|_| Error::ShortBody("link"))?;
            let index = link.index.get() as u32;
            if header.kind.get() == kind::DELLINK {
                Event::DelLink(index)
            } else {
                let mut out = Link {
                    index,
                    name: None,
                    mtu: None,
                };
                for attr in attributes(attrs) {
                    let (kind, value) = attr?;
                    match kind {
                        IFLA_IFNAME => out.name = Some(Name::new(value)),
                        IFLA_MTU => {
                            out.mtu = U32::read_from_prefix(value).ok().map(|(v, _)| v.get())
                        }
                        _ => {}
                    }
                }
                Event::NewLink(out)
            }
        }
        kind::NEWADDR | kind::DELADDR => {
            let (addr, attrs) =
                AddrHeader::ref_from_prefix(body).map_err(|_| Error::ShortBody("address"))?;
            if addr.family != AF_INET {
                return Ok((Event::Other, used));
            }
            let (mut local, mut address) = (None, None);
            for attr in attributes(attrs) {
                let (kind, value) = attr?;
                let ip = <[u8; 4]>::read_from_prefix(value)
                    .ok()
                    .map(|(v, _)| Ipv4Addr::from(v));
                match kind {
                    IFA_LOCAL => local = ip,
                    IFA_ADDRESS => address = ip,
                    _ => {}
                }
            }
            // On a point-to-point link IFA_ADDRESS is the peer and
            // IFA_LOCAL ours; elsewhere they are equal or only one is sent.
            match local.or(address) {
                Some(address) => {
                    let out = Addr {
                        index: addr.index.get(),
                        address,
                        prefix_len: addr.prefix_len.min(32),
                    };
                    if header.kind.get() == kind::NEWADDR {
                        Event::NewAddr(out)
                    } else {
                        Event::DelAddr(out)
                    }
                }
                None => Event::Other,
            }
        }
        kind::DONE => Event::Done,
        kind::ERROR => {
            let code = I32::read_from_prefix(body)
                .map_err(|_| Error::ShortBody("error"))?
                .0
                .get();
            // An error message with code 0 is an acknowledgement.
            if code != 0 {
                return Err(Error::Kernel(code.saturating_neg()));
            }
            Event::Other
        }
        _ => Event::Other,
    };
    Ok((event, used))
}

/// The attributes of a message body: (type, value).
fn attributes(mut rest: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), Error>> {
    std::iter::from_fn(move || {
        if rest.len() < size_of::<AttrHeader>() {
            return None;
        }
        let Ok((attr, _)) = AttrHeader::read_from_prefix(rest) else {
            return None;
        };
        let len = usize::from(attr.len.get());
        if len < size_of::<AttrHeader>() || len > rest.len() {
            rest = &[];
            return Some(Err(Error::BadAttribute(attr.len.get())));
        }
        let value = &rest[size_of::<AttrHeader>()..len];
        rest = rest.get(align4(len)..).unwrap_or(&[]);
        // The type's top two bits are flags (NLA_F_NESTED, byte order).
        Some(Ok((attr.kind.get() & 0x3fff, value)))
    })
}

/// Writes a dump request for every link (`kind::GETLINK`) or every IPv4
/// address (`kind::GETADDR`) into `out`.
pub fn dump_request(request: u16, seq: u32, out: &mut [u8; DUMP_REQUEST_LEN]) {
    let family = if request == kind::GETADDR {
        AF_INET
    } else {
        AF_UNSPEC
    };
    let message = DumpRequest {
        header: Header {
            len: U32::new(DUMP_REQUEST_LEN as u32),
            kind: U16::new(request),
            flags: U16::new(NLM_F_REQUEST | NLM_F_DUMP),
            seq: U32::new(seq),
            pid: U32::new(0),
        },
        family,
        pad: [0; 3],
    };
    out.copy_from_slice(message.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&0u16.to_ne_bytes());
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(body);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    fn link_body(index: i32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![0u8, 0, 1, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend_from_slice(&[0; 8]);
        attrs.iter().for_each(|a| body.extend_from_slice(a));
        body
    }

    fn addr_body(family: u8, prefix: u8, index: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![family, prefix, 0, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        attrs.iter().for_each(|a| body.extend_from_slice(a));
        body
    }

    #[test]
    fn reads_links_addresses_and_done_from_one_datagram() {
        let mut datagram = message(
            kind::NEWLINK,
            &link_body(
                3,
                &[
                    attr(IFLA_IFNAME, b"veth0\0"),
                    attr(IFLA_MTU, &9000u32.to_ne_bytes()),
                ],
            ),
        );
        datagram.extend(message(
            kind::NEWADDR,
            &addr_body(
                AF_INET,
                24,
                3,
                &[
                    attr(IFA_ADDRESS, &[10, 9, 0, 2]),
                    attr(IFA_LOCAL, &[10, 9, 0, 1]),
                ],
            ),
        ));
        datagram.extend(message(
            kind::NEWADDR,
            &addr_body(10, 64, 3, &[attr(IFA_ADDRESS, &[0; 16])]),
        ));
        datagram.extend(message(kind::DELLINK, &link_body(4, &[])));
        datagram.extend(message(kind::DONE, &[0; 4]));
        let events: Vec<_> = messages(&datagram).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            events,
            [
                Event::NewLink(Link {
                    index: 3,
                    name: Some(Name::new(b"veth0")),
                    mtu: Some(9000)
                }),
                Event::NewAddr(Addr {
                    index: 3,
                    address: Ipv4Addr::new(10, 9, 0, 1),
                    prefix_len: 24
                }),
                Event::Other,
                Event::DelLink(4),
                Event::Done,
            ]
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let good = message(kind::NEWLINK, &link_body(1, &[attr(IFLA_MTU, &[1, 2])]));
        for cut in 0..good.len() {
            let _ = messages(&good[..cut]).count();
        }
        // An attribute claiming more than its message holds.
        let mut bad = message(kind::NEWLINK, &link_body(1, &[attr(IFLA_MTU, &[0; 4])]));
        bad[32] = 200;
        assert_eq!(messages(&bad).next(), Some(Err(Error::BadAttribute(200))));
        // A message longer than the datagram.
        let mut long = message(kind::DONE, &[0; 4]);
        long[0] = 99;
        assert_eq!(messages(&long).next(), Some(Err(Error::BadLength(99))));
        // A kernel error, and an acknowledgement (error 0).
        let err = message(kind::ERROR, &(-1i32).to_ne_bytes());
        assert_eq!(messages(&err).next(), Some(Err(Error::Kernel(1))));
        let odd = message(kind::ERROR, &i32::MIN.to_ne_bytes());
        assert_eq!(messages(&odd).next(), Some(Err(Error::Kernel(i32::MAX))));
        let ack = message(kind::ERROR, &0i32.to_ne_bytes());
        assert_eq!(messages(&ack).next(), Some(Ok(Event::Other)));
        // A short MTU attribute reads as no MTU.
        assert_eq!(
            messages(&good).next(),
            Some(Ok(Event::NewLink(Link {
                index: 1,
                name: None,
                mtu: None
            })))
        );
    }

    #[test]
    fn dump_requests_frame_themselves() {
        let mut out = [0u8; DUMP_REQUEST_LEN];
        dump_request(kind::GETADDR, 7, &mut out);
        assert_eq!(u32::from_ne_bytes(out[0..4].try_into().unwrap()), 20);
        assert_eq!(
            u16::from_ne_bytes(out[4..6].try_into().unwrap()),
            kind::GETADDR
        );
        assert_eq!(u16::from_ne_bytes(out[6..8].try_into().unwrap()), 0x301);
        assert_eq!(out[16], AF_INET);
    }
}

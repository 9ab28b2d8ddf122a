//! One simulated PXE client's proxyDHCP exchange, as a sans-IO state
//! machine like `client::Transfer`: the engine feeds it datagrams and clock
//! ticks, and it answers with the datagram to send, if any.
//!
//! The exchange (PXE 2.1, 2.2.1 and 2.2.3; UEFI HTTP boot for arch 16):
//! 1. DISCOVER to the server's DHCP port: broadcast flag, the client's MAC,
//!    option 53 = 1, 60 `PXEClient:Arch:000NN:UNDI:002001` (`HTTPClient...`
//!    for arch 16), 93 (arch), 94 (UNDI 2.1), 97 (type 0 + a UUID), 55.
//! 2. The proxy OFFER: BOOTREPLY, same xid, 53 = 2, 54 present, 60 the
//!    client's class prefix, yiaddr 0, chaddr and giaddr echoed, and some
//!    boot information (a PXE menu in option 43, siaddr or a file).
//! 3. REQUEST (53 = 3) to the boot server port (4011) with ciaddr set, the
//!    same options, and option 43 with the boot item (sub-option 71) of the
//!    first menu entry when the OFFER carried a menu (or its own 71 echoed).
//! 4. The ACK: 53 = 5, ciaddr echoed, yiaddr 0, siaddr or option 66 (a URL
//!    in the file for HTTP boot), a NUL-terminated boot file name, the boot
//!    item echoed in option 43.
//!
//! Silence for one retry interval resends the DISCOVER or REQUEST (same
//! xid); after `max` retries in a row the exchange fails ("timeout-offer",
//! "timeout-ack"). A reply that breaks a rule above fails the exchange at
//! once, with a kind such as "offer-missing-option-60" or
//! "ack-yiaddr-nonzero".
//!
//! Packets are built and parsed here, byte by byte, without rackboot's own
//! `wire::dhcp`: this is a second, independent implementation.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use crate::client::Retry;

/// Where relay agents receive server replies (RFC 2131 4.1): proxy OFFERs
/// to a relayed DISCOVER go to giaddr on this port, whatever port the
/// server listens on.
pub const RELAY_PORT: u16 = 67;
/// Where clients receive broadcast OFFERs.
pub const CLIENT_PORT: u16 = 68;

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const HTYPE_ETHERNET: u8 = 1;
const HLEN_ETHERNET: u8 = 6;
const FLAG_BROADCAST: u16 = 0x8000;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Offsets in the BOOTP header.
const CIADDR: usize = 12;
const YIADDR: usize = 16;
const SIADDR: usize = 20;
const GIADDR: usize = 24;
const CHADDR: usize = 28;
const SNAME: usize = 44;
const FILE: usize = 108;
const COOKIE: usize = 236;
const OPTIONS: usize = 240;
/// BOOTP's minimum message size; requests are padded to it.
const MIN_LEN: usize = 300;

const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const NAK: u8 = 6;

/// Option codes.
const PAD: u8 = 0;
const END: u8 = 255;
const OPT_VENDOR: u8 = 43;
const OPT_OVERLOAD: u8 = 52;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMS: u8 = 55;
const OPT_CLASS: u8 = 60;
const OPT_TFTP_SERVER: u8 = 66;
const OPT_BOOTFILE: u8 = 67;
const OPT_ARCH: u8 = 93;
const OPT_NDI: u8 = 94;
const OPT_UUID: u8 = 97;
/// PXE sub-options of option 43.
const SUB_BOOT_MENU: u8 = 9;
const SUB_BOOT_ITEM: u8 = 71;

/// What an Intel PXE ROM asks for (option 55).
const PARAMETERS: &[u8] = &[
    1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59, 60, 66,
    67, 97, 128, 129, 130, 131, 132, 133, 134, 135,
];

/// The architectures `--dhcp-arch` offers (option 93).
pub const ARCHES: [u16; 4] = [0, 7, 9, 16];
/// UEFI HTTP boot (x64): `HTTPClient`, answered with a URL.
const ARCH_HTTP: u16 = 16;

/// How OFFERs reach the load generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offers {
    /// As a relay agent: DISCOVERs carry giaddr, OFFERs come back unicast
    /// to giaddr:67. `None`: pick a free 127.0.67.x (loopback servers).
    Relay(Option<Ipv4Addr>),
    /// As clients on the server's segment: no giaddr, OFFERs broadcast to
    /// 255.255.255.255:68.
    Broadcast,
}

/// The address a client puts in ciaddr of its REQUEST (the ACK is sent
/// there, at the REQUEST's source port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ciaddr {
    /// One address per client in 127.0.0.0/8 (loopback servers): every one
    /// of them reaches the pool's wildcard-bound sockets.
    PerClientLoopback,
    /// This address for every client (the tool's own address).
    Fixed(Ipv4Addr),
    /// The address the client's pool socket is bound to (`--source-ips`).
    PoolSocket,
}

/// The run's DHCP parameters.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Where DISCOVERs go (the proxy's DHCP port).
    pub server: SocketAddrV4,
    /// Where REQUESTs go (the boot server port, normally 4011).
    pub pxe: SocketAddrV4,
    /// Option 93.
    pub arch: u16,
    pub offers: Offers,
    pub ciaddr: Ciaddr,
    pub retry: Retry,
    /// Also accept the ACK form of dnsmasq's boot-item path: the client's
    /// address in yiaddr and ciaddr 0 (firmware takes both forms).
    pub swapped_ack: bool,
}

/// Client `index`'s address in 127.0.0.0/8: the low 24 bits of its
/// pxelinux identity (10.x.y.z, from 10.0.0.100 on), so never 127.0.0.1.
pub fn loopback_ciaddr(ip: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(0x7f00_0000 | (u32::from(ip) & 0x00ff_ffff))
}

/// Who one client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub mac: [u8; 6],
    pub uuid: [u8; 16],
    pub xid: u32,
    /// ciaddr of the REQUEST.
    pub ciaddr: Ipv4Addr,
    /// giaddr of the DISCOVER (0: broadcast mode).
    pub giaddr: Ipv4Addr,
}

/// Which of the engine's sockets a datagram leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The socket OFFERs arrive on (giaddr:67 or *:68): DISCOVERs.
    Offers,
    /// The client's pool socket: REQUESTs, where the ACK comes back.
    Pool,
}

/// A datagram to send: `len` bytes at the start of the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Send {
    pub to: SocketAddr,
    pub len: usize,
    pub via: Via,
}

/// Where the exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// DISCOVER sent, waiting for the OFFER.
    Discover,
    /// REQUEST sent, waiting for the ACK.
    Request,
}

/// Why an exchange failed: `kind` groups failures in the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: &'static str,
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            f.write_str(self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.detail)
        }
    }
}

fn failure(kind: &'static str, detail: impl Into<String>) -> Failure {
    Failure {
        kind,
        detail: detail.into(),
    }
}

#[derive(Debug)]
pub struct Exchange {
    client: Client,
    server: SocketAddrV4,
    pxe: SocketAddrV4,
    arch: u16,
    retry: Retry,
    swapped_ack: bool,
    started: Instant,
    stage: Stage,
    deadline: Instant,
    retries: u32,
    /// Requests that went one retry interval without an answer.
    unanswered: u32,
    waited_a_round: bool,
    /// Sub-option 71 sent in the REQUEST (from the OFFER's menu).
    boot_item: Option<[u8; 4]>,
    /// The ACK's boot file, once done.
    boot_file: String,
    outcome: Option<Result<(), Failure>>,
}

impl Exchange {
    pub fn new(setup: &Setup, client: Client, now: Instant) -> Exchange {
        Exchange {
            client,
            server: setup.server,
            pxe: setup.pxe,
            arch: setup.arch,
            retry: setup.retry,
            swapped_ack: setup.swapped_ack,
            started: now,
            stage: Stage::Discover,
            deadline: now + setup.retry.interval,
            retries: 0,
            unanswered: 0,
            waited_a_round: false,
            boot_item: None,
            boot_file: String::new(),
            outcome: None,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// `Some(Ok(()))` once the ACK checked out.
    pub fn outcome(&self) -> Option<&Result<(), Failure>> {
        self.outcome.as_ref()
    }

    /// Requests (DISCOVER, REQUEST) that went a retry interval unanswered.
    pub fn unanswered(&self) -> u32 {
        self.unanswered
    }

    /// The boot file the ACK named.
    pub fn boot_file(&self) -> &str {
        &self.boot_file
    }

    /// When `handle_timeout` must be called; `None` once finished.
    pub fn deadline(&self) -> Option<Instant> {
        self.outcome.is_none().then_some(self.deadline)
    }

    /// The DISCOVER that starts the exchange.
    pub fn start(&mut self, now: Instant, out: &mut [u8]) -> Send {
        self.stage = Stage::Discover;
        self.send_current(now, out)
    }

    fn send_current(&mut self, now: Instant, out: &mut [u8]) -> Send {
        self.deadline = now + self.retry.interval;
        match self.stage {
            Stage::Discover => Send {
                to: SocketAddr::V4(self.server),
                len: self.build(DISCOVER, now, out),
                via: Via::Offers,
            },
            Stage::Request => Send {
                to: SocketAddr::V4(self.pxe),
                len: self.build(REQUEST, now, out),
                via: Via::Pool,
            },
        }
    }

    fn http(&self) -> bool {
        self.arch == ARCH_HTTP
    }

    /// The class prefix the server must echo in option 60.
    fn class_prefix(&self) -> &'static [u8] {
        if self.http() {
            b"HTTPClient"
        } else {
            b"PXEClient"
        }
    }

    /// Writes a DISCOVER or REQUEST into `out`; returns its length.
    fn build(&self, message_type: u8, now: Instant, out: &mut [u8]) -> usize {
        let mut p = Writer::new(out);
        let discover = message_type == DISCOVER;
        let relayed = discover && !self.client.giaddr.is_unspecified();
        let secs = now.saturating_duration_since(self.started).as_secs();
        p.put(&[
            BOOTREQUEST,
            HTYPE_ETHERNET,
            HLEN_ETHERNET,
            u8::from(relayed),
        ]);
        p.put(&self.client.xid.to_be_bytes());
        p.put(&u16::try_from(secs).unwrap_or(u16::MAX).to_be_bytes());
        let flags: u16 = if discover { FLAG_BROADCAST } else { 0 };
        p.put(&flags.to_be_bytes());
        let ciaddr = if discover {
            Ipv4Addr::UNSPECIFIED
        } else {
            self.client.ciaddr
        };
        p.put(&ciaddr.octets());
        p.put(&[0; 8]); // yiaddr, siaddr
        let giaddr = if relayed {
            self.client.giaddr
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        p.put(&giaddr.octets());
        p.put(&self.client.mac);
        p.put(&[0; 10 + 64 + 128]); // chaddr padding, sname, file
        p.put(&MAGIC_COOKIE);
        p.option(OPT_MESSAGE_TYPE, &[message_type]);
        p.option(OPT_PARAMS, PARAMETERS);
        p.option(OPT_ARCH, &self.arch.to_be_bytes());
        p.option(OPT_NDI, &[1, 2, 1]);
        let mut uuid = [0u8; 17];
        uuid[1..].copy_from_slice(&self.client.uuid);
        p.option(OPT_UUID, &uuid);
        let class = if self.http() {
            format!("HTTPClient:Arch:{:05}:UNDI:003001", self.arch)
        } else {
            format!("PXEClient:Arch:{:05}:UNDI:002001", self.arch)
        };
        p.option(OPT_CLASS, class.as_bytes());
        if let (false, Some(item)) = (discover, self.boot_item) {
            let mut vendor = [SUB_BOOT_ITEM, 4, 0, 0, 0, 0, END];
            vendor[2..6].copy_from_slice(&item);
            p.option(OPT_VENDOR, &vendor);
        }
        p.put(&[END]);
        while p.len < MIN_LEN {
            p.put(&[PAD]);
        }
        p.len
    }

    /// One received datagram, from `from`. The engine has matched its xid.
    pub fn handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Option<Send> {
        if self.outcome.is_some() {
            return None;
        }
        let expected = match self.stage {
            Stage::Discover => self.server,
            Stage::Request => self.pxe,
        };
        if from.ip() != *expected.ip() {
            // Another server on the segment (a real DHCP server answers
            // DISCOVERs too): not the one under test.
            return None;
        }
        let reply = match Reply::parse(datagram) {
            Ok(reply) => reply,
            Err(why) => {
                let kind = match self.stage {
                    Stage::Discover => "offer-malformed",
                    Stage::Request => "ack-malformed",
                };
                return self.fail(failure(kind, why));
            }
        };
        if reply.xid() != self.client.xid {
            return None; // not ours (the engine demultiplexes by xid)
        }
        let message_type = reply.option(OPT_MESSAGE_TYPE);
        let checked = match (self.stage, message_type) {
            (_, Some([NAK])) => Err(failure("nak", format!("DHCPNAK from {from}"))),
            (Stage::Discover, Some([OFFER])) => self.check_offer(from, &reply),
            // A late copy of the OFFER (our DISCOVER was resent).
            (Stage::Request, Some([OFFER])) => return None,
            (Stage::Request, Some([ACK])) => self.check_ack(from, &reply),
            (Stage::Discover, None) => Err(failure("offer-missing-option-53", "")),
            (Stage::Request, None) => Err(failure("ack-missing-option-53", "")),
            (Stage::Discover, Some(other)) => Err(failure(
                "offer-wrong-message-type",
                format!("option 53 = {other:?}, expected [2]"),
            )),
            (Stage::Request, Some(other)) => Err(failure(
                "ack-wrong-message-type",
                format!("option 53 = {other:?}, expected [5]"),
            )),
        };
        if let Err(f) = checked {
            return self.fail(f);
        }
        match self.stage {
            Stage::Discover => {
                self.stage = Stage::Request;
                self.retries = 0;
                self.waited_a_round = false;
                Some(self.send_current(now, out))
            }
            Stage::Request => {
                self.outcome = Some(Ok(()));
                None
            }
        }
    }

    fn fail(&mut self, f: Failure) -> Option<Send> {
        self.outcome = Some(Err(f));
        None
    }

    /// What the OFFER and the ACK share: header fields echoed, 54, 60, 97.
    fn check_common(
        &self,
        what: Stage,
        from: SocketAddr,
        reply: &Reply<'_>,
    ) -> Result<(), Failure> {
        let offer = what == Stage::Discover;
        let k = |offer_kind: &'static str, ack_kind: &'static str| {
            if offer { offer_kind } else { ack_kind }
        };
        let expected_from = if offer { self.server } else { self.pxe };
        if from.port() != expected_from.port() {
            return Err(failure(
                k("offer-wrong-source", "ack-wrong-source"),
                format!("from {from}, expected {expected_from}"),
            ));
        }
        if reply.op() != BOOTREPLY {
            return Err(failure(
                k("offer-not-bootreply", "ack-not-bootreply"),
                format!("op {}", reply.op()),
            ));
        }
        if reply.htype() != HTYPE_ETHERNET || reply.hlen() != HLEN_ETHERNET {
            return Err(failure(
                k("offer-htype-hlen", "ack-htype-hlen"),
                format!("htype {} hlen {}", reply.htype(), reply.hlen()),
            ));
        }
        let chaddr = reply.chaddr();
        if chaddr[..6] != self.client.mac || chaddr[6..].iter().any(|&b| b != 0) {
            return Err(failure(
                k("offer-chaddr-mismatch", "ack-chaddr-mismatch"),
                format!("chaddr {}", hex(chaddr)),
            ));
        }
        if !reply.yiaddr().is_unspecified() && (offer || !self.is_swapped_ack(reply)) {
            return Err(failure(
                k("offer-yiaddr-nonzero", "ack-yiaddr-nonzero"),
                format!(
                    "yiaddr {} (a proxy never hands out addresses)",
                    reply.yiaddr()
                ),
            ));
        }
        match reply.option(OPT_SERVER_ID) {
            None => {
                return Err(failure(
                    k("offer-missing-option-54", "ack-missing-option-54"),
                    "",
                ));
            }
            Some(id) if id.len() != 4 || id == [0; 4] => {
                return Err(failure(
                    k("offer-bad-option-54", "ack-bad-option-54"),
                    format!("server identifier {}", hex(id)),
                ));
            }
            Some(_) => {}
        }
        match reply.option(OPT_CLASS) {
            None => {
                return Err(failure(
                    k("offer-missing-option-60", "ack-missing-option-60"),
                    "",
                ));
            }
            Some(class) if class != self.class_prefix() => {
                return Err(failure(
                    k("offer-option-60-mismatch", "ack-option-60-mismatch"),
                    format!(
                        "{:?}, expected {:?}",
                        String::from_utf8_lossy(class),
                        String::from_utf8_lossy(self.class_prefix())
                    ),
                ));
            }
            Some(_) => {}
        }
        // Option 97 is echoed to a client that sent a type-0 UUID (PXE 2.1).
        match reply.option(OPT_UUID) {
            None => Err(failure(
                k("offer-missing-option-97", "ack-missing-option-97"),
                "",
            )),
            Some(id) if id.len() != 17 || id[0] != 0 || id[1..] != self.client.uuid => {
                Err(failure(
                    k("offer-option-97-mismatch", "ack-option-97-mismatch"),
                    hex(id),
                ))
            }
            Some(_) => Ok(()),
        }
    }

    fn check_offer(&mut self, from: SocketAddr, reply: &Reply<'_>) -> Result<(), Failure> {
        self.check_common(Stage::Discover, from, reply)?;
        if !reply.ciaddr().is_unspecified() {
            return Err(failure(
                "offer-ciaddr-nonzero",
                format!("ciaddr {}", reply.ciaddr()),
            ));
        }
        if reply.giaddr() != self.client.giaddr {
            return Err(failure(
                "offer-giaddr-mismatch",
                format!("giaddr {}, sent {}", reply.giaddr(), self.client.giaddr),
            ));
        }
        let vendor = match reply.option(OPT_VENDOR) {
            Some(v) => {
                Some(sub_options(v).map_err(|why| failure("offer-option-43-malformed", why))?)
            }
            None => None,
        };
        let find = |code: u8| {
            vendor
                .iter()
                .flatten()
                .find(|(c, _)| *c == code)
                .map(|&(_, d)| d)
        };
        let file = reply.boot_file();
        if self.http() {
            if !file.as_deref().is_some_and(is_url) {
                return Err(failure(
                    "offer-no-url",
                    format!("HTTP boot offer names {file:?}, not a URL"),
                ));
            }
            return Ok(());
        }
        // A boot item to ask for: echo one the OFFER named, else pick the
        // first menu entry that is not "local boot" (type 0).
        self.boot_item = match (find(SUB_BOOT_ITEM), find(SUB_BOOT_MENU)) {
            (Some(item), _) => Some(item.try_into().map_err(|_| {
                failure(
                    "offer-option-43-malformed",
                    format!("boot item of {} bytes", item.len()),
                )
            })?),
            (None, Some(menu)) => {
                first_menu_item(menu).map_err(|why| failure("offer-option-43-malformed", why))?
            }
            (None, None) => None,
        };
        let has_server =
            !reply.siaddr().is_unspecified() || reply.option(OPT_TFTP_SERVER).is_some();
        if self.boot_item.is_none() && !has_server && file.is_none() {
            return Err(failure(
                "offer-no-boot-info",
                "no boot menu, no siaddr or option 66, no file",
            ));
        }
        Ok(())
    }

    /// An ACK in dnsmasq's boot-item form, when that is accepted.
    fn is_swapped_ack(&self, reply: &Reply<'_>) -> bool {
        self.swapped_ack && reply.yiaddr() == self.client.ciaddr && reply.ciaddr().is_unspecified()
    }

    fn check_ack(&mut self, from: SocketAddr, reply: &Reply<'_>) -> Result<(), Failure> {
        self.check_common(Stage::Request, from, reply)?;
        if reply.ciaddr() != self.client.ciaddr && !self.is_swapped_ack(reply) {
            return Err(failure(
                "ack-ciaddr-mismatch",
                format!("ciaddr {}, sent {}", reply.ciaddr(), self.client.ciaddr),
            ));
        }
        if !reply.file_terminated() {
            return Err(failure("ack-file-unterminated", "no NUL in the file field"));
        }
        let Some(file) = reply.boot_file() else {
            return Err(failure(
                "ack-no-boot-file",
                "empty file field, no option 67",
            ));
        };
        if self.http() {
            if !is_url(&file) {
                return Err(failure("ack-no-url", format!("{file:?} is not a URL")));
            }
        } else if reply.siaddr().is_unspecified() && reply.option(OPT_TFTP_SERVER).is_none() {
            return Err(failure("ack-no-tftp-server", "siaddr 0 and no option 66"));
        }
        if let Some(item) = self.boot_item {
            let echoed = reply
                .option(OPT_VENDOR)
                .map(sub_options)
                .transpose()
                .map_err(|why| failure("ack-option-43-malformed", why))?
                .and_then(|subs| {
                    subs.into_iter()
                        .find(|(c, _)| *c == SUB_BOOT_ITEM)
                        .map(|(_, d)| d.to_vec())
                });
            if echoed.as_deref() != Some(&item[..]) {
                return Err(failure(
                    "ack-boot-item-not-echoed",
                    format!(
                        "asked for {}, got {:?}",
                        hex(&item),
                        echoed.map(|e| hex(&e))
                    ),
                ));
            }
        }
        self.boot_file = file;
        Ok(())
    }

    /// The retry timer: resend, or give up after `max` retries.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut [u8]) -> Option<Send> {
        if self.outcome.is_some() || now < self.deadline {
            return None;
        }
        if !self.waited_a_round {
            self.waited_a_round = true;
            self.unanswered += 1;
        }
        if self.retries >= self.retry.max {
            let (kind, what) = match self.stage {
                Stage::Discover => ("timeout-offer", "DISCOVER"),
                Stage::Request => ("timeout-ack", "REQUEST"),
            };
            let sends = self.retries + 1;
            return self.fail(failure(
                kind,
                format!("{what} sent {sends} times, no answer"),
            ));
        }
        self.retries += 1;
        Some(self.send_current(now, out))
    }
}

/// A client-built packet: bytes appended to the caller's buffer. The
/// buffer is sized by the engine for any request (under 400 bytes).
struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, len: 0 }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn option(&mut self, code: u8, data: &[u8]) {
        debug_assert!(data.len() <= 255);
        self.put(&[code, data.len() as u8]);
        self.put(data);
    }
}

/// A received BOOTP/DHCP message: the header read in place, the options
/// (with option overload, RFC 2132 9.3, and split options concatenated,
/// RFC 3396) collected once.
#[derive(Debug)]
pub struct Reply<'a> {
    bytes: &'a [u8],
    options: Vec<(u8, Vec<u8>)>,
    overload: u8,
}

impl<'a> Reply<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Reply<'a>, String> {
        if bytes.len() < OPTIONS {
            return Err(format!("{} bytes, shorter than a DHCP header", bytes.len()));
        }
        if bytes[COOKIE..OPTIONS] != MAGIC_COOKIE {
            return Err(format!("magic cookie {}", hex(&bytes[COOKIE..OPTIONS])));
        }
        if bytes[2] > 16 {
            return Err(format!("hlen {} over 16", bytes[2]));
        }
        let mut reply = Reply {
            bytes,
            options: Vec::new(),
            overload: 0,
        };
        if !reply.collect(&bytes[OPTIONS..], "options")? {
            return Err("the options end without END".into());
        }
        if let Some(o) = reply.option(OPT_OVERLOAD) {
            reply.overload = match o {
                [v @ 1..=3] => *v,
                _ => return Err(format!("option 52 = {}", hex(o))),
            };
        }
        if reply.overload & 1 != 0 {
            reply.collect(&bytes[FILE..COOKIE], "file field")?;
        }
        if reply.overload & 2 != 0 {
            reply.collect(&bytes[SNAME..FILE], "sname field")?;
        }
        Ok(reply)
    }

    /// Adds the options of one area; true when it ended with END.
    fn collect(&mut self, area: &[u8], name: &str) -> Result<bool, String> {
        let mut i = 0;
        while i < area.len() {
            match area[i] {
                PAD => i += 1,
                END => return Ok(true),
                code => {
                    let len = *area
                        .get(i + 1)
                        .ok_or_else(|| format!("option {code} has no length ({name})"))?
                        as usize;
                    let data = area.get(i + 2..i + 2 + len).ok_or_else(|| {
                        format!("option {code} (length {len}) overruns the {name}")
                    })?;
                    match self.options.iter_mut().find(|(c, _)| *c == code) {
                        Some((_, existing)) => existing.extend_from_slice(data),
                        None => self.options.push((code, data.to_vec())),
                    }
                    i += 2 + len;
                }
            }
        }
        Ok(false)
    }

    pub fn op(&self) -> u8 {
        self.bytes[0]
    }
    pub fn htype(&self) -> u8 {
        self.bytes[1]
    }
    pub fn hlen(&self) -> u8 {
        self.bytes[2]
    }
    pub fn xid(&self) -> u32 {
        xid_of(self.bytes).unwrap_or(0)
    }
    fn addr(&self, at: usize) -> Ipv4Addr {
        Ipv4Addr::new(
            self.bytes[at],
            self.bytes[at + 1],
            self.bytes[at + 2],
            self.bytes[at + 3],
        )
    }
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.addr(CIADDR)
    }
    pub fn yiaddr(&self) -> Ipv4Addr {
        self.addr(YIADDR)
    }
    pub fn siaddr(&self) -> Ipv4Addr {
        self.addr(SIADDR)
    }
    pub fn giaddr(&self) -> Ipv4Addr {
        self.addr(GIADDR)
    }
    pub fn chaddr(&self) -> &[u8] {
        &self.bytes[CHADDR..CHADDR + 16]
    }

    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| d.as_slice())
    }

    /// Whether the file field holds a NUL-terminated name (or options).
    pub fn file_terminated(&self) -> bool {
        self.overload & 1 != 0 || self.bytes[FILE..COOKIE].contains(&0)
    }

    /// The boot file: option 67, else the file field up to its NUL; `None`
    /// when both are empty.
    pub fn boot_file(&self) -> Option<String> {
        let name = match self.option(OPT_BOOTFILE) {
            Some(o) => o.split(|&b| b == 0).next().unwrap_or_default(),
            None if self.overload & 1 == 0 => {
                let field = &self.bytes[FILE..COOKIE];
                field.split(|&b| b == 0).next().unwrap_or_default()
            }
            None => &[],
        };
        (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
    }
}

/// The xid of a BOOTP message, for demultiplexing.
pub fn xid_of(datagram: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(datagram.get(4..8)?.try_into().ok()?))
}

/// The sub-options of option 43 (same format as options; PAD, END).
fn sub_options(data: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            PAD => i += 1,
            END => break,
            code => {
                let len = *data
                    .get(i + 1)
                    .ok_or_else(|| format!("sub-option {code} has no length"))?
                    as usize;
                let d = data
                    .get(i + 2..i + 2 + len)
                    .ok_or_else(|| format!("sub-option {code} overruns option 43"))?;
                out.push((code, d));
                i += 2 + len;
            }
        }
    }
    Ok(out)
}

/// The boot item (type, layer 0) of the first menu entry that is not local
/// boot; `None` when the menu only offers local boot.
fn first_menu_item(menu: &[u8]) -> Result<Option<[u8; 4]>, String> {
    let mut i = 0;
    while i < menu.len() {
        let entry = menu.get(i..i + 3).ok_or("boot menu entry cut short")?;
        let text_len = usize::from(entry[2]);
        if menu.len() < i + 3 + text_len {
            return Err("boot menu text overruns sub-option 9".into());
        }
        if entry[..2] != [0, 0] {
            return Ok(Some([entry[0], entry[1], 0, 0]));
        }
        i += 3 + text_len;
    }
    Ok(None)
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 6767);
    const PXE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 4011);
    const RELAY: Ipv4Addr = Ipv4Addr::new(127, 0, 67, 1);
    const CIADDR_: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 100);

    fn setup(arch: u16) -> Setup {
        Setup {
            server: SERVER,
            pxe: PXE,
            arch,
            offers: Offers::Relay(Some(RELAY)),
            ciaddr: Ciaddr::PerClientLoopback,
            retry: Retry::default(),
            swapped_ack: false,
        }
    }

    fn client() -> Client {
        Client {
            mac: [0x52, 0x54, 0, 0, 0, 7],
            uuid: [0xab; 16],
            xid: 0x1234_5678,
            ciaddr: CIADDR_,
            giaddr: RELAY,
        }
    }

    /// Options of a request built by the exchange, in order.
    fn options_of(packet: &[u8]) -> Vec<(u8, Vec<u8>)> {
        Reply::parse(packet).unwrap().options
    }

    /// A server reply, built by hand: `edit` adjusts the header.
    fn reply(message_type: u8, options: &[(u8, &[u8])], edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
        let c = client();
        let mut p = vec![0u8; OPTIONS];
        p[..4].copy_from_slice(&[BOOTREPLY, 1, 6, 0]);
        p[4..8].copy_from_slice(&c.xid.to_be_bytes());
        p[CHADDR..CHADDR + 6].copy_from_slice(&c.mac);
        p[COOKIE..OPTIONS].copy_from_slice(&MAGIC_COOKIE);
        p.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, message_type]);
        for (code, data) in options {
            p.extend_from_slice(&[*code, data.len() as u8]);
            p.extend_from_slice(data);
        }
        p.push(END);
        p.resize(p.len().max(MIN_LEN), 0);
        edit(&mut p);
        p
    }

    fn uuid_option() -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&client().uuid);
        v
    }

    /// A BIOS offer as dnsmasq and rackboot send it: a menu in option 43.
    fn bios_offer(edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
        let menu = [
            6, 1, 3, // discovery control
            9, 10, 0x80, 0x00, 7, b'I', b'n', b's', b't', b'a', b'l', b'l', // menu
            10, 4, 0, b'P', b'X', b'E', // prompt
            255,
        ];
        reply(
            OFFER,
            &[
                (OPT_SERVER_ID, &[127, 0, 0, 1]),
                (OPT_CLASS, b"PXEClient"),
                (OPT_UUID, &uuid_option()),
                (OPT_VENDOR, &menu),
            ],
            |p| {
                p[GIADDR..GIADDR + 4].copy_from_slice(&RELAY.octets());
                p[10] = 0x80;
                edit(p);
            },
        )
    }

    fn bios_ack(edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
        reply(
            ACK,
            &[
                (OPT_SERVER_ID, &[127, 0, 0, 1]),
                (OPT_CLASS, b"PXEClient"),
                (OPT_UUID, &uuid_option()),
                (OPT_VENDOR, &[71, 4, 0x80, 0, 0, 0, 255]),
            ],
            |p| {
                p[CIADDR..CIADDR + 4].copy_from_slice(&CIADDR_.octets());
                p[SIADDR..SIADDR + 4].copy_from_slice(&[127, 0, 0, 1]);
                p[FILE..FILE + 10].copy_from_slice(b"pxelinux.0");
                edit(p);
            },
        )
    }

    fn feed(x: &mut Exchange, from: SocketAddrV4, packet: &[u8]) -> Option<(Send, Vec<u8>)> {
        let mut out = [0u8; 1024];
        let now = x.started;
        x.handle(now, SocketAddr::V4(from), packet, &mut out)
            .map(|s| (s, out[..s.len].to_vec()))
    }

    fn started(arch: u16) -> (Exchange, Vec<u8>) {
        let now = Instant::now();
        let mut x = Exchange::new(&setup(arch), client(), now);
        let mut out = [0u8; 1024];
        let s = x.start(now, &mut out);
        assert_eq!((s.to, s.via), (SocketAddr::V4(SERVER), Via::Offers));
        (x, out[..s.len].to_vec())
    }

    fn kind(x: &Exchange) -> &'static str {
        match x.outcome() {
            Some(Err(f)) => f.kind,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn discover_is_a_relayed_pxe_discover() {
        let (_, d) = started(0);
        assert!(d.len() >= MIN_LEN);
        assert_eq!(&d[..4], &[1, 1, 6, 1], "op, htype, hlen, hops 1 (relayed)");
        assert_eq!(&d[4..8], &0x1234_5678u32.to_be_bytes());
        assert_eq!(&d[10..12], &[0x80, 0], "broadcast flag");
        assert_eq!(&d[CIADDR..CIADDR + 4], &[0; 4]);
        assert_eq!(&d[GIADDR..GIADDR + 4], &RELAY.octets());
        assert_eq!(&d[CHADDR..CHADDR + 6], &client().mac);
        assert_eq!(&d[COOKIE..OPTIONS], &MAGIC_COOKIE);
        let opts = options_of(&d);
        let get = |c: u8| opts.iter().find(|(k, _)| *k == c).map(|(_, v)| v.clone());
        assert_eq!(get(53), Some(vec![1]));
        assert_eq!(
            get(60).as_deref(),
            Some(&b"PXEClient:Arch:00000:UNDI:002001"[..])
        );
        assert_eq!(get(93), Some(vec![0, 0]));
        assert_eq!(get(94), Some(vec![1, 2, 1]));
        assert_eq!(get(97), Some(uuid_option()));
        assert!(get(55).is_some_and(|l| l.contains(&43) && l.contains(&67)));
        assert_eq!(get(43), None);
        // The other architectures.
        let (_, d) = started(9);
        let opts = options_of(&d);
        assert!(opts.contains(&(60, b"PXEClient:Arch:00009:UNDI:002001".to_vec())));
        assert!(opts.contains(&(93, vec![0, 9])));
        let (_, d) = started(16);
        assert!(options_of(&d).contains(&(60, b"HTTPClient:Arch:00016:UNDI:003001".to_vec())));
    }

    #[test]
    fn bios_menu_offer_then_request_with_the_boot_item_then_ack() {
        let (mut x, _) = started(0);
        let (s, r) = feed(&mut x, SERVER, &bios_offer(|_| {})).expect("a REQUEST");
        assert_eq!((s.to, s.via), (SocketAddr::V4(PXE), Via::Pool));
        assert_eq!(x.stage(), Stage::Request);
        assert_eq!(&r[..4], &[1, 1, 6, 0], "not relayed");
        assert_eq!(&r[10..12], &[0, 0], "no broadcast flag");
        assert_eq!(&r[CIADDR..CIADDR + 4], &CIADDR_.octets());
        assert_eq!(&r[GIADDR..GIADDR + 4], &[0; 4]);
        let opts = options_of(&r);
        assert!(opts.contains(&(53, vec![3])));
        assert!(opts.contains(&(43, vec![71, 4, 0x80, 0, 0, 0, 255])));
        // A resent OFFER is ignored.
        assert_eq!(feed(&mut x, SERVER, &bios_offer(|_| {})), None);
        assert_eq!(x.outcome(), None);
        assert_eq!(feed(&mut x, PXE, &bios_ack(|_| {})), None);
        assert_eq!(x.outcome(), Some(&Ok(())));
        assert_eq!(x.boot_file(), "pxelinux.0");
        assert_eq!(x.deadline(), None);
    }

    #[test]
    fn uefi_offer_without_menu_then_ack_by_option_67() {
        let (mut x, _) = started(7);
        let offer = reply(
            OFFER,
            &[
                (OPT_SERVER_ID, &[127, 0, 0, 1]),
                (OPT_CLASS, b"PXEClient"),
                (OPT_UUID, &uuid_option()),
            ],
            |p| {
                p[SIADDR..SIADDR + 4].copy_from_slice(&[127, 0, 0, 1]);
                p[GIADDR..GIADDR + 4].copy_from_slice(&RELAY.octets());
            },
        );
        let (_, r) = feed(&mut x, SERVER, &offer).unwrap();
        assert!(options_of(&r).iter().all(|(c, _)| *c != 43));
        let ack = reply(
            ACK,
            &[
                (OPT_SERVER_ID, &[127, 0, 0, 1]),
                (OPT_CLASS, b"PXEClient"),
                (OPT_UUID, &uuid_option()),
                (OPT_TFTP_SERVER, b"boot.example"),
                (OPT_BOOTFILE, b"ipxe.efi"),
            ],
            |p| p[CIADDR..CIADDR + 4].copy_from_slice(&CIADDR_.octets()),
        );
        feed(&mut x, PXE, &ack);
        assert_eq!(x.outcome(), Some(&Ok(())));
        assert_eq!(x.boot_file(), "ipxe.efi");
    }

    #[test]
    fn offer_defects_are_named() {
        let cases: Vec<(&str, Vec<u8>, SocketAddrV4)> = vec![
            (
                "offer-yiaddr-nonzero",
                bios_offer(|p| p[YIADDR] = 10),
                SERVER,
            ),
            (
                "offer-chaddr-mismatch",
                bios_offer(|p| p[CHADDR + 5] ^= 1),
                SERVER,
            ),
            (
                "offer-giaddr-mismatch",
                bios_offer(|p| p[GIADDR] = 0),
                SERVER,
            ),
            ("offer-not-bootreply", bios_offer(|p| p[0] = 1), SERVER),
            ("offer-wrong-source", bios_offer(|_| {}), PXE),
            (
                "offer-missing-option-60",
                reply(
                    OFFER,
                    &[(OPT_SERVER_ID, &[127, 0, 0, 1]), (OPT_UUID, &uuid_option())],
                    |p| p[GIADDR..GIADDR + 4].copy_from_slice(&RELAY.octets()),
                ),
                SERVER,
            ),
            (
                "offer-missing-option-54",
                reply(OFFER, &[(OPT_CLASS, b"PXEClient")], |_| {}),
                SERVER,
            ),
            (
                "offer-option-60-mismatch",
                reply(
                    OFFER,
                    &[(OPT_SERVER_ID, &[127, 0, 0, 1]), (OPT_CLASS, b"PXECl")],
                    |_| {},
                ),
                SERVER,
            ),
            (
                "offer-no-boot-info",
                reply(
                    OFFER,
                    &[
                        (OPT_SERVER_ID, &[127, 0, 0, 1]),
                        (OPT_CLASS, b"PXEClient"),
                        (OPT_UUID, &uuid_option()),
                    ],
                    |p| p[GIADDR..GIADDR + 4].copy_from_slice(&RELAY.octets()),
                ),
                SERVER,
            ),
            ("offer-wrong-message-type", reply(ACK, &[], |_| {}), SERVER),
            ("offer-malformed", bios_offer(|p| p[COOKIE] = 0), SERVER),
            (
                "offer-malformed",
                bios_offer(|p| {
                    let end = p.iter().rposition(|&b| b == END).unwrap();
                    p.truncate(end); // the options stop without END
                }),
                SERVER,
            ),
        ];
        for (want, packet, from) in cases {
            let (mut x, _) = started(0);
            assert_eq!(feed(&mut x, from, &packet), None, "{want}");
            assert_eq!(
                x.outcome().map(|o| o.as_ref().map_err(|f| f.kind)),
                Some(Err(want))
            );
        }
    }

    #[test]
    fn ack_defects_are_named() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("ack-yiaddr-nonzero", bios_ack(|p| p[YIADDR] = 10)),
            ("ack-ciaddr-mismatch", bios_ack(|p| p[CIADDR + 3] = 1)),
            (
                "ack-no-tftp-server",
                bios_ack(|p| p[SIADDR..SIADDR + 4].fill(0)),
            ),
            ("ack-no-boot-file", bios_ack(|p| p[FILE] = 0)),
            (
                "ack-file-unterminated",
                bios_ack(|p| p[FILE..COOKIE].fill(b'x')),
            ),
            (
                "ack-boot-item-not-echoed",
                bios_ack(|p| {
                    let at = p.windows(3).position(|w| w == [71, 4, 0x80]).unwrap();
                    p[at + 2] = 0x81;
                }),
            ),
            ("ack-chaddr-mismatch", bios_ack(|p| p[CHADDR] = 0)),
            (
                "ack-missing-option-60",
                reply(ACK, &[(OPT_SERVER_ID, &[127, 0, 0, 1])], |_| {}),
            ),
            ("nak", reply(NAK, &[], |_| {})),
        ];
        for (want, packet) in cases {
            let (mut x, _) = started(0);
            feed(&mut x, SERVER, &bios_offer(|_| {})).unwrap();
            assert_eq!(feed(&mut x, PXE, &packet), None, "{want}");
            assert_eq!(
                x.outcome().map(|o| o.as_ref().map_err(|f| f.kind)),
                Some(Err(want))
            );
        }
    }

    #[test]
    fn dnsmasqs_swapped_ack_passes_only_when_accepted() {
        let swapped = bios_ack(|p| {
            let ciaddr: [u8; 4] = p[CIADDR..CIADDR + 4].try_into().unwrap();
            p[YIADDR..YIADDR + 4].copy_from_slice(&ciaddr);
            p[CIADDR..CIADDR + 4].fill(0);
        });
        for accept in [false, true] {
            let now = Instant::now();
            let mut x = Exchange::new(
                &Setup {
                    swapped_ack: accept,
                    ..setup(0)
                },
                client(),
                now,
            );
            x.start(now, &mut [0u8; 1024]);
            feed(&mut x, SERVER, &bios_offer(|_| {})).unwrap();
            feed(&mut x, PXE, &swapped);
            let got = x.outcome().map(|o| o.as_ref().map_err(|f| f.kind).copied());
            let want = if accept {
                Ok(())
            } else {
                Err("ack-yiaddr-nonzero")
            };
            assert_eq!(got, Some(want), "accepted: {accept}");
        }
    }

    #[test]
    fn overloaded_file_field_holds_options() {
        // Option 52 = 1: the file field carries option 67.
        let ack = bios_ack(|p| {
            p[FILE..COOKIE].fill(0);
            p[FILE..FILE + 12].copy_from_slice(&[
                67, 9, b'b', b'o', b'o', b't', b'.', b'e', b'f', b'i', 0, 255,
            ]);
            let end = p.iter().rposition(|&b| b == END).unwrap();
            p.splice(end..end, [52, 1, 1]);
        });
        let r = Reply::parse(&ack).unwrap();
        assert_eq!(r.boot_file().as_deref(), Some("boot.efi"));
        // Split options are joined (RFC 3396).
        let split = reply(
            OFFER,
            &[(OPT_CLASS, b"PXE"), (OPT_CLASS, b"Client")],
            |_| {},
        );
        assert_eq!(
            Reply::parse(&split).unwrap().option(OPT_CLASS),
            Some(&b"PXEClient"[..])
        );
    }

    #[test]
    fn silence_resends_the_same_request_then_fails() {
        let (mut x, first) = started(0);
        let mut out = [0u8; 1024];
        let mut resent = 0;
        while x.outcome().is_none() {
            let at = x.deadline().unwrap();
            assert_eq!(
                x.handle_timeout(at - Duration::from_millis(1), &mut out),
                None
            );
            if let Some(s) = x.handle_timeout(at, &mut out) {
                assert_eq!(s.via, Via::Offers);
                assert_eq!(out[4..8], first[4..8], "same xid");
                resent += 1;
            }
        }
        assert_eq!(resent, Retry::default().max);
        assert_eq!(kind(&x), "timeout-offer");
        assert_eq!(x.unanswered(), 1);

        let (mut x, _) = started(0);
        feed(&mut x, SERVER, &bios_offer(|_| {})).unwrap();
        while x.outcome().is_none() {
            let at = x.deadline().unwrap();
            if let Some(s) = x.handle_timeout(at, &mut out) {
                assert_eq!((s.to, s.via), (SocketAddr::V4(PXE), Via::Pool));
                assert!(Reply::parse(&out[..s.len]).unwrap().option(53) == Some(&[3][..]));
            }
        }
        assert_eq!(kind(&x), "timeout-ack");
    }

    #[test]
    fn loopback_addresses_stay_clear_of_127_0_0_1() {
        use crate::scenario::Identity;
        let a = loopback_ciaddr(Identity::of(0).ip);
        assert_eq!(a, Ipv4Addr::new(127, 0, 0, 100));
        assert_ne!(loopback_ciaddr(Identity::of(1).ip), a);
        assert_eq!(
            loopback_ciaddr(Identity::of(10_000).ip),
            Ipv4Addr::new(127, 0, 39, 116)
        );
    }
}

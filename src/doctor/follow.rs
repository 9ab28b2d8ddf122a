//! The per-machine state machine: datagrams with their capture time go in,
//! and each client MAC accumulates what happened to it — its DISCOVERs,
//! every offer from every server, REQUEST/ACK, port 4011, and its TFTP
//! transfers and HTTP requests. Sans-IO: no clock, no sockets; [`verdict`](super::verdict)
//! reads the result.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::dhcp::MacPattern;
use crate::wire::dhcp::{self as wire_dhcp, BOOTREPLY, BOOTREQUEST, code, message_type};
use crate::wire::tftp;

use super::frame::{Datagram, Segment, tcp_segment, udp_datagram};

/// TFTP's well-known port, where a read request is sent.
pub const TFTP_PORT: u16 = 69;
/// Block size without the blksize option (RFC 1350).
const DEFAULT_BLKSIZE: usize = 512;
/// At most this many transfers are kept per machine (a loop of misses
/// cannot grow memory without bound); later ones are counted only.
const MAX_TRANSFERS: usize = 256;
/// At most this many machines are followed; more are counted only.
const MAX_MACHINES: usize = 4096;

/// One offer (or port-4011 ACK) as the client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// When it was first seen.
    pub at: Duration,
    /// Option 54, or the IP source when it is missing.
    pub server: Ipv4Addr,
    /// `yiaddr`: an address server's lease; unspecified for a proxy.
    pub address: Ipv4Addr,
    /// `siaddr`, the next server (TFTP).
    pub next_server: Ipv4Addr,
    /// The boot file: the `file` header field, or option 67.
    pub file: Option<String>,
    /// Whether option 60 says `PXEClient`.
    pub pxe_client: bool,
    /// Whether option 43 (PXE vendor options) is present.
    pub vendor_options: bool,
    /// How many copies were seen.
    pub count: u32,
}

impl Offer {
    /// A proxy offer leases no address.
    pub fn is_proxy(&self) -> bool {
        self.address.is_unspecified()
    }
}

/// How a TFTP read request ended (so far).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No answer yet.
    Waiting,
    /// The client ended the transfer after the OACK with ERROR 8: EDK2's
    /// size probe, followed by the real request.
    Probe,
    /// Data is flowing.
    Transferring,
    /// The last DATA was shorter than the block size.
    Complete,
    /// The server answered ERROR.
    ServerError { code: u16, message: String },
    /// The client gave up with ERROR (other than the probe's 8).
    ClientError { code: u16, message: String },
}

/// How a file was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tftp,
    Http,
}

/// One TFTP read request or HTTP request and what followed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub protocol: Protocol,
    pub at: Duration,
    /// The last packet of the transfer either way.
    pub last_at: Duration,
    pub file: String,
    pub client: SocketAddrV4,
    /// The server's address the RRQ went to.
    pub server: Ipv4Addr,
    /// RRQs sent for it (1 plus retransmissions).
    pub requests: u32,
    pub blksize: usize,
    /// The highest DATA block received, and the payload bytes in order.
    pub block: u16,
    pub bytes: u64,
    pub outcome: Outcome,
    /// HTTP: the body length the response announced, and the TCP
    /// sequence number of the body's first byte: the body received is up
    /// to the furthest segment seen (a retransmission is not counted
    /// twice, and a segment the capture missed does not hide the rest).
    pub expected: Option<u64>,
    pub body_seq: u32,
}

impl Transfer {
    /// A request just seen, unanswered.
    pub fn new(
        protocol: Protocol,
        at: Duration,
        file: String,
        client: SocketAddrV4,
        server: Ipv4Addr,
    ) -> Transfer {
        Transfer {
            protocol,
            at,
            last_at: at,
            file,
            client,
            server,
            requests: 1,
            blksize: DEFAULT_BLKSIZE,
            block: 0,
            bytes: 0,
            outcome: Outcome::Waiting,
            expected: None,
            body_seq: 0,
        }
    }
}

/// Everything seen of one client MAC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    pub first_at: Duration,
    /// Option 93 from its DHCP messages.
    pub arch: Option<u16>,
    /// Option 60 from its DHCP messages.
    pub vendor_class: Option<String>,
    pub discovers: u32,
    pub first_discover: Option<Duration>,
    pub last_discover: Option<Duration>,
    /// Offers on port 68 (or relayed to 67), one per server, in order.
    pub offers: Vec<Offer>,
    /// DHCPREQUESTs on port 67.
    pub requests: u32,
    /// The DHCPACK to its request: server and leased address.
    pub ack: Option<(Ipv4Addr, Ipv4Addr)>,
    /// A DHCPNAK's server.
    pub nak: Option<Ipv4Addr>,
    /// Requests to port 4011, with the server they went to.
    pub pxe_requests: Vec<(Duration, Ipv4Addr)>,
    /// ACKs from port 4011, one per server.
    pub pxe_acks: Vec<Offer>,
    pub transfers: Vec<Transfer>,
    /// Transfers past [`MAX_TRANSFERS`], counted only.
    pub transfers_dropped: u64,
}

impl Machine {
    /// Its address: the acknowledged lease, else an offered one.
    pub fn address(&self) -> Option<Ipv4Addr> {
        self.ack.map(|(_, address)| address).or_else(|| {
            self.offers
                .iter()
                .find(|o| !o.is_proxy())
                .map(|o| o.address)
        })
    }
}

/// The followed machines, and which TFTP transfer each client socket is in.
#[derive(Debug, Default)]
pub struct Follow {
    filter: Option<MacPattern>,
    machines: BTreeMap<[u8; 6], Machine>,
    /// Client address of a transfer -> (MAC, index in its `transfers`).
    transfers: HashMap<SocketAddrV4, ([u8; 6], usize)>,
    /// Client end of an HTTP connection -> its current request, likewise.
    http: HashMap<SocketAddrV4, ([u8; 6], usize)>,
    /// Leased address -> MAC, to attribute routed TFTP clients.
    leases: HashMap<Ipv4Addr, [u8; 6]>,
    /// Frames read, and the first and last capture time.
    pub frames: u64,
    pub first_at: Option<Duration>,
    pub last_at: Option<Duration>,
    /// Machines past [`MAX_MACHINES`], counted only.
    pub machines_dropped: u64,
}

impl Follow {
    /// Follows every machine, or only those `filter` matches.
    pub fn new(filter: Option<MacPattern>) -> Self {
        Follow {
            filter,
            ..Follow::default()
        }
    }

    /// The machines followed, by MAC.
    pub fn machines(&self) -> &BTreeMap<[u8; 6], Machine> {
        &self.machines
    }

    /// Feeds one Ethernet frame captured at `at`. Anything that is not a
    /// DHCP, port-4011 or TFTP datagram is counted and ignored.
    pub fn frame(&mut self, at: Duration, frame: &[u8]) {
        self.frames += 1;
        self.saw(at);
        if let Some(datagram) = udp_datagram(frame) {
            self.datagram(at, &datagram);
        } else if let Some(segment) = tcp_segment(frame) {
            self.segment(at, &segment);
        }
    }

    /// Feeds one TCP segment: HTTP requests (whatever the port) and what
    /// the server answers to them.
    pub fn segment(&mut self, at: Duration, segment: &Segment<'_>) {
        self.saw(at);
        let payload = segment.payload;
        if segment.len == 0 {
            return; // a bare ACK, SYN or FIN
        }
        if payload.starts_with(b"GET ") || payload.starts_with(b"HEAD ") {
            self.http_request(at, segment);
            return;
        }
        let Some(&key) = self.http.get(&segment.dst) else {
            return;
        };
        let Some(transfer) = self.transfer_mut(key) else {
            return;
        };
        transfer.last_at = at;
        if transfer.outcome == Outcome::Waiting && payload.starts_with(b"HTTP/1.") {
            http_response(transfer, segment);
        } else if transfer.outcome == Outcome::Transferring && segment.len > 0 {
            let end = segment.seq.wrapping_add(segment.len as u32);
            // Within 2 GiB after the body's start (sequence numbers wrap).
            let upto = end.wrapping_sub(transfer.body_seq);
            if (upto as i32) > 0 {
                transfer.bytes = transfer.bytes.max(u64::from(upto));
            }
            if transfer.expected.is_some_and(|e| transfer.bytes >= e) {
                transfer.outcome = Outcome::Complete;
            }
        }
    }

    fn http_request(&mut self, at: Duration, segment: &Segment<'_>) {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        // The request line is enough; the head may span segments.
        let _ = request.parse(segment.payload);
        let (Some(method), Some(path)) = (request.method, request.path) else {
            return;
        };
        let client = segment.src;
        let mac = self.owner(client, segment.src_mac);
        let file = path.trim_start_matches('/').to_owned();
        let mut transfer = Transfer::new(Protocol::Http, at, file, client, *segment.dst.ip());
        // A HEAD is a size probe, as TFTP's tsize-then-ERROR 8 is.
        transfer.expected = (method == "HEAD").then_some(0);
        if let Some(key) = self.push_transfer(at, mac, transfer) {
            self.http.insert(client, key);
        }
    }

    /// The machine a file request is from: the one leased its address,
    /// else the frame's source MAC (a routed client's is the router's).
    fn owner(&self, client: SocketAddrV4, src_mac: [u8; 6]) -> [u8; 6] {
        self.leases.get(client.ip()).copied().unwrap_or(src_mac)
    }

    /// Adds `transfer` to `mac`'s machine (unless filtered out or past
    /// [`MAX_TRANSFERS`]); returns where it is.
    fn push_transfer(
        &mut self,
        at: Duration,
        mac: [u8; 6],
        transfer: Transfer,
    ) -> Option<([u8; 6], usize)> {
        let machine = self.machine(at, mac)?;
        if machine.transfers.len() >= MAX_TRANSFERS {
            machine.transfers_dropped += 1;
            return None;
        }
        machine.transfers.push(transfer);
        Some((mac, machine.transfers.len() - 1))
    }

    /// The transfer a [`Follow::push_transfer`] key names.
    fn transfer_mut(&mut self, (mac, index): ([u8; 6], usize)) -> Option<&mut Transfer> {
        self.machines.get_mut(&mac)?.transfers.get_mut(index)
    }

    /// Feeds one UDP datagram.
    pub fn datagram(&mut self, at: Duration, datagram: &Datagram<'_>) {
        self.saw(at);
        let dhcp_ports = [
            wire_dhcp::SERVER_PORT,
            wire_dhcp::CLIENT_PORT,
            wire_dhcp::PXE_PORT,
        ];
        if dhcp_ports.contains(&datagram.src.port())
            && dhcp_ports.contains(&datagram.dst.port())
            && let Ok(packet) = wire_dhcp::Packet::new_checked(datagram.payload)
        {
            self.dhcp(at, datagram, &packet);
            return;
        }
        self.tftp(at, datagram);
    }

    /// Extends the capture's time span to `at`.
    fn saw(&mut self, at: Duration) {
        self.first_at = Some(self.first_at.map_or(at, |first| first.min(at)));
        self.last_at = Some(self.last_at.map_or(at, |last| last.max(at)));
    }

    /// The machine for `mac`, created on first sight unless filtered out.
    fn machine(&mut self, at: Duration, mac: [u8; 6]) -> Option<&mut Machine> {
        if self.filter.is_some_and(|filter| !filter.matches(&mac)) {
            return None;
        }
        if !self.machines.contains_key(&mac) && self.machines.len() >= MAX_MACHINES {
            self.machines_dropped += 1;
            return None;
        }
        Some(self.machines.entry(mac).or_insert_with(|| Machine {
            first_at: at,
            ..Machine::default()
        }))
    }

    fn dhcp(&mut self, at: Duration, datagram: &Datagram<'_>, packet: &wire_dhcp::Packet<'_>) {
        let Ok(mac) = <[u8; 6]>::try_from(packet.chaddr()) else {
            return;
        };
        let kind = packet.message_type();
        let to_pxe_port = datagram.dst.port() == wire_dhcp::PXE_PORT;
        let from_pxe_port = datagram.src.port() == wire_dhcp::PXE_PORT;
        match packet.op() {
            BOOTREQUEST => {
                let Some(machine) = self.machine(at, mac) else {
                    return;
                };
                if let Some(arch) = packet
                    .option(code::CLIENT_ARCH)
                    .and_then(crate::wire::pxe::client_arch)
                {
                    machine.arch = Some(arch);
                }
                if let Some(class) = packet.option(code::VENDOR_CLASS) {
                    machine.vendor_class = Some(String::from_utf8_lossy(class).into_owned());
                }
                match kind {
                    _ if to_pxe_port => machine.pxe_requests.push((at, *datagram.dst.ip())),
                    Some(message_type::DISCOVER) => {
                        machine.discovers += 1;
                        machine.first_discover.get_or_insert(at);
                        machine.last_discover = Some(at);
                    }
                    Some(message_type::REQUEST) => machine.requests += 1,
                    _ => {}
                }
                if machine.pxe_requests.len() > MAX_TRANSFERS {
                    machine.pxe_requests.remove(0);
                }
            }
            BOOTREPLY => {
                let offer = read_offer(at, datagram, packet);
                let address = offer.address;
                let Some(machine) = self.machine(at, mac) else {
                    return;
                };
                match kind {
                    _ if from_pxe_port => merge(&mut machine.pxe_acks, offer),
                    Some(message_type::OFFER) | None => merge(&mut machine.offers, offer),
                    Some(message_type::ACK) if !address.is_unspecified() => {
                        machine.ack = Some((offer.server, address));
                        self.leases.insert(address, mac);
                    }
                    // An ACK that leases nothing: a proxy answering a
                    // REQUEST, which carries the same boot information.
                    Some(message_type::ACK) => merge(&mut machine.offers, offer),
                    Some(message_type::NAK) => machine.nak = Some(offer.server),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn tftp(&mut self, at: Duration, datagram: &Datagram<'_>) {
        let Ok(packet) = tftp::Packet::parse(datagram.payload) else {
            return;
        };
        if let tftp::Packet::Rrq(request) = packet {
            if datagram.dst.port() == TFTP_PORT {
                self.rrq(at, datagram, &request);
            }
            return;
        }
        // The server answers to the client's address and port; the client
        // answers from them.
        let (key, from_client) = if let Some(&found) = self.transfers.get(&datagram.dst) {
            (found, false)
        } else if let Some(&found) = self.transfers.get(&datagram.src) {
            (found, true)
        } else {
            return;
        };
        let Some(transfer) = self.transfer_mut(key) else {
            return;
        };
        transfer.last_at = at;
        match (packet, from_client) {
            (tftp::Packet::Oack(options), false) => {
                if let Some(blksize) = options
                    .get("blksize")
                    .and_then(tftp::parse_decimal)
                    .and_then(|b| usize::try_from(b).ok())
                {
                    transfer.blksize = blksize;
                }
                if transfer.outcome == Outcome::Waiting {
                    transfer.outcome = Outcome::Transferring;
                }
            }
            (tftp::Packet::Data { block, payload }, false) => {
                if transfer.outcome == Outcome::Waiting {
                    transfer.outcome = Outcome::Transferring;
                }
                if block == transfer.block.wrapping_add(1) {
                    transfer.block = block;
                    transfer.bytes += payload.len() as u64;
                    if payload.len() < transfer.blksize && transfer.outcome == Outcome::Transferring
                    {
                        transfer.outcome = Outcome::Complete;
                    }
                }
            }
            (tftp::Packet::Error { code, message }, false)
                if !matches!(transfer.outcome, Outcome::Complete | Outcome::Probe) =>
            {
                transfer.outcome = Outcome::ServerError {
                    code,
                    message: String::from_utf8_lossy(message).into_owned(),
                };
            }
            (tftp::Packet::Error { code, message }, true) => {
                let probe = code == tftp::ErrorCode::OptionRefused as u16 && transfer.block == 0;
                transfer.outcome = if probe {
                    Outcome::Probe
                } else if transfer.outcome == Outcome::Complete {
                    Outcome::Complete
                } else {
                    Outcome::ClientError {
                        code,
                        message: String::from_utf8_lossy(message).into_owned(),
                    }
                };
            }
            _ => {}
        }
    }

    fn rrq(&mut self, at: Duration, datagram: &Datagram<'_>, request: &tftp::Request<'_>) {
        let client = datagram.src;
        let mac = self.owner(client, datagram.src_mac);
        let file = String::from_utf8_lossy(request.filename).into_owned();
        // A retransmitted request: the same file from the same port, unanswered.
        if let Some(&previous) = self.transfers.get(&client)
            && previous.0 == mac
            && let Some(transfer) = self.transfer_mut(previous)
            && transfer.file == file
            && transfer.outcome == Outcome::Waiting
        {
            transfer.requests += 1;
            transfer.last_at = at;
            return;
        }
        let transfer = Transfer::new(Protocol::Tftp, at, file, client, *datagram.dst.ip());
        if let Some(key) = self.push_transfer(at, mac, transfer) {
            self.transfers.insert(client, key);
        }
    }
}

/// The response head to an HTTP request: its status, and the body bytes
/// that came with it.
fn http_response(transfer: &mut Transfer, segment: &Segment<'_>) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = response.parse(segment.payload) else {
        return;
    };
    let code = response.code.unwrap_or(0);
    if !(200..300).contains(&code) {
        transfer.outcome = Outcome::ServerError {
            code,
            message: response.reason.unwrap_or("").to_owned(),
        };
        return;
    }
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        });
    if transfer.expected == Some(0) {
        // HEAD: the head is the whole answer.
        transfer.outcome = Outcome::Probe;
        return;
    }
    transfer.expected = length;
    let body = segment.len.saturating_sub(head_len) as u64;
    transfer.bytes = body;
    transfer.body_seq = segment.seq.wrapping_add(head_len as u32);
    transfer.outcome = if length.is_some_and(|l| body >= l) {
        Outcome::Complete
    } else {
        Outcome::Transferring
    };
}

/// Reads what a reply offers.
fn read_offer(at: Duration, datagram: &Datagram<'_>, packet: &wire_dhcp::Packet<'_>) -> Offer {
    let server = packet
        .option(code::SERVER_ID)
        .and_then(|id| <[u8; 4]>::try_from(id).ok())
        .map_or(*datagram.src.ip(), Ipv4Addr::from);
    let header_file = field_text(&packet.header().file);
    let file = if header_file.is_empty() {
        packet
            .option(code::BOOTFILE_NAME)
            .map(field_text)
            .filter(|f| !f.is_empty())
    } else {
        Some(header_file)
    };
    Offer {
        at,
        server,
        address: packet.yiaddr(),
        next_server: packet.siaddr(),
        file,
        pxe_client: packet
            .option(code::VENDOR_CLASS)
            .is_some_and(|class| class.starts_with(b"PXEClient")),
        vendor_options: packet.option(code::VENDOR_SPECIFIC).is_some(),
        count: 1,
    }
}

/// Adds an offer, or counts a repeat of one from the same server.
fn merge(offers: &mut Vec<Offer>, offer: Offer) {
    if let Some(seen) = offers.iter_mut().find(|o| o.server == offer.server) {
        seen.count += 1;
        // A later offer may add what the first lacked (the file).
        if seen.file.is_none() {
            seen.file = offer.file;
        }
        seen.vendor_options |= offer.vendor_options;
        seen.pxe_client |= offer.pxe_client;
    } else if offers.len() < MAX_TRANSFERS {
        offers.push(offer);
    }
}

/// A NUL-terminated header field or option as text.
fn field_text(bytes: &[u8]) -> String {
    let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn send(follow: &mut Follow, at: u64, src: &str, dst: &str, payload: &[u8]) {
        let datagram = Datagram {
            src_mac: MAC,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            payload,
        };
        follow.datagram(Duration::from_secs(at), &datagram);
    }

    #[test]
    fn a_retransmitted_request_is_one_transfer() {
        let mut follow = Follow::new(None);
        let rrq = b"\0\x01boot.efi\0octet\0";
        send(&mut follow, 1, "10.0.0.5:1000", "10.0.0.2:69", rrq);
        send(&mut follow, 2, "10.0.0.5:1000", "10.0.0.2:69", rrq);
        send(
            &mut follow,
            3,
            "10.0.0.2:5000",
            "10.0.0.5:1000",
            b"\0\x03\0\x01tiny",
        );
        let machine = &follow.machines()[&MAC];
        assert_eq!(machine.transfers.len(), 1);
        let transfer = &machine.transfers[0];
        assert_eq!(transfer.requests, 2);
        assert_eq!(transfer.outcome, Outcome::Complete);
        assert_eq!((transfer.block, transfer.bytes), (1, 4));
        assert_eq!(transfer.last_at, Duration::from_secs(3));

        // A repeated DATA block is not counted twice, and a stray ERROR
        // after the end does not undo it.
        send(
            &mut follow,
            4,
            "10.0.0.2:5000",
            "10.0.0.5:1000",
            b"\0\x03\0\x01tiny",
        );
        send(
            &mut follow,
            4,
            "10.0.0.2:5000",
            "10.0.0.5:1000",
            b"\0\x05\0\x05x\0",
        );
        let transfer = &follow.machines()[&MAC].transfers[0];
        assert_eq!((transfer.bytes, &transfer.outcome), (4, &Outcome::Complete));
    }

    #[test]
    fn unrelated_traffic_and_filtered_machines_are_ignored() {
        let mut follow = Follow::new(Some("52:54:00:ff".parse().unwrap()));
        send(
            &mut follow,
            1,
            "10.0.0.5:1000",
            "10.0.0.2:69",
            b"\0\x01a\0octet\0",
        );
        send(
            &mut follow,
            1,
            "10.0.0.5:1000",
            "10.0.0.2:53",
            b"\0\x03\0\x01",
        );
        assert!(follow.machines().is_empty());
        assert_eq!(follow.last_at, Some(Duration::from_secs(1)));

        let mut follow = Follow::new(None);
        send(
            &mut follow,
            1,
            "10.0.0.2:5000",
            "10.0.0.5:1000",
            b"\0\x03\0\x01data",
        );
        assert!(
            follow.machines().is_empty(),
            "DATA with no request before it"
        );
    }

    #[test]
    fn transfers_per_machine_are_bounded() {
        let mut follow = Follow::new(None);
        for port in 0..(MAX_TRANSFERS as u16 + 10) {
            let client = format!("10.0.0.5:{}", 1000 + port);
            send(
                &mut follow,
                1,
                &client,
                "10.0.0.2:69",
                b"\0\x01miss\0octet\0",
            );
        }
        let machine = &follow.machines()[&MAC];
        assert_eq!(machine.transfers.len(), MAX_TRANSFERS);
        assert_eq!(machine.transfers_dropped, 10);
    }
}

//! One verdict per machine, in the firmware's terms: what [`Follow`] saw of
//! it is judged from the first step that failed (no offer, no boot file, no
//! answer on 4011, TFTP) to the last file it fetched.
//!
//! [`Follow`]: super::follow::Follow

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::dhcp::Arch;

use super::follow::{Machine, Offer, Outcome, Protocol, Transfer};

/// How long firmware waits for the first answer to a TFTP read request
/// before it reports an open timeout (PXE-E32); capture time.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(4);
/// Failures after the last fetched file listed in a verdict, at most.
const MAX_LISTED: usize = 3;

/// What one machine's boot came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// An HTTP request that failed: no response, an error status, or a
    /// body cut short; `what` says which, in a few words.
    HttpFailed {
        file: String,
        server: Ipv4Addr,
        what: String,
    },
    /// PXE-E51: DISCOVERs, and no offer.
    NoOffer { discovers: u32, over: Duration },
    /// The address server marks its offer `PXEClient` (option 60) without
    /// a boot file: firmware takes it for the PXE server and skips proxies.
    ServerSendsPxeClient {
        server: Ipv4Addr,
        offers: Vec<Offer>,
    },
    /// PXE-E53: offers, none with a boot file, and no port-4011 request.
    NoBootFile { offers: Vec<Offer> },
    /// PXE-E55: port-4011 requests that no server answered.
    NoPxeAnswer {
        servers: Vec<Ipv4Addr>,
        requests: usize,
    },
    /// A boot file was offered but never requested over TFTP.
    NeverRequested { file: String, server: Ipv4Addr },
    /// Only EDK2's size probe (OACK, then ERROR 8), nothing after it.
    Probed { file: String, server: Ipv4Addr },
    /// PXE-E32: a read request with no answer within [`OPEN_TIMEOUT`].
    OpenTimeout {
        file: String,
        server: Ipv4Addr,
        requests: u32,
    },
    /// A read request the capture ended too soon to judge.
    CaptureEnded { file: String, server: Ipv4Addr },
    /// PXE-E3B: ERROR 1 for the file it needed.
    NotFound {
        file: String,
        server: Ipv4Addr,
        message: String,
    },
    /// PXE-E36: another ERROR from the server.
    TftpError {
        file: String,
        server: Ipv4Addr,
        code: u16,
        message: String,
    },
    /// The client gave up on the transfer with an ERROR of its own.
    ClientAborted {
        file: String,
        code: u16,
        message: String,
    },
    /// Data flowed, then stopped before the last block.
    Stalled {
        file: String,
        server: Ipv4Addr,
        bytes: u64,
        block: u16,
    },
    /// At least one file was fetched: the first, the last, and what failed
    /// after the last.
    Booted {
        first: String,
        last: String,
        files: usize,
        bytes: u64,
        after: Vec<String>,
    },
    /// Two servers offer different boot files; `then` is what happened.
    ProxiesDisagree {
        choices: Vec<(Ipv4Addr, String)>,
        then: Box<Finding>,
    },
}

impl Finding {
    /// The PXE error code firmware shows for it, if it has one.
    pub fn pxe_error(&self) -> Option<&'static str> {
        match self {
            Finding::NoOffer { .. } => Some("PXE-E51"),
            Finding::NoBootFile { .. } => Some("PXE-E53"),
            Finding::NoPxeAnswer { .. } => Some("PXE-E55"),
            Finding::OpenTimeout { .. } => Some("PXE-E32"),
            Finding::NotFound { .. } => Some("PXE-E3B"),
            Finding::TftpError { .. } => Some("PXE-E36"),
            Finding::ProxiesDisagree { then, .. } => then.pxe_error(),
            _ => None,
        }
    }

    /// Whether the machine fetched at least one file.
    pub fn booted(&self) -> bool {
        match self {
            Finding::Booted { .. } => true,
            Finding::ProxiesDisagree { then, .. } => then.booted(),
            _ => false,
        }
    }
}

/// The verdict on one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub mac: [u8; 6],
    /// Option 93.
    pub arch: Option<u16>,
    pub address: Option<Ipv4Addr>,
    pub finding: Finding,
    /// The last step that succeeded, for verdicts that are not a boot.
    pub last_step: Option<String>,
}

/// Judges one machine; `end` is the capture's last timestamp, against
/// which unanswered TFTP requests are timed.
pub fn judge(mac: [u8; 6], machine: &Machine, end: Duration) -> Verdict {
    let mut finding = if machine.transfers.is_empty() {
        before_tftp(machine)
    } else {
        tftp(&machine.transfers, end)
    };
    let choices = boot_choices(machine);
    let mut servers: Vec<_> = choices.iter().map(|(server, _)| *server).collect();
    servers.sort();
    servers.dedup();
    let files_differ = choices
        .first()
        .is_some_and(|(_, first)| choices.iter().any(|(_, file)| file != first));
    if files_differ && servers.len() > 1 {
        finding = Finding::ProxiesDisagree {
            choices,
            then: Box::new(finding),
        };
    }
    let last_step = if finding.booted() {
        None
    } else {
        last_step(machine)
    };
    Verdict {
        mac,
        arch: machine.arch,
        address: machine.address(),
        finding,
        last_step,
    }
}

/// The DHCP part, for a machine that never sent a TFTP request.
fn before_tftp(machine: &Machine) -> Finding {
    if machine.offers.is_empty() && machine.pxe_acks.is_empty() {
        let over = match (machine.first_discover, machine.last_discover) {
            (Some(first), Some(last)) => last.saturating_sub(first),
            _ => Duration::ZERO,
        };
        return Finding::NoOffer {
            discovers: machine.discovers,
            over,
        };
    }
    let choices = boot_choices(machine);
    if choices.is_empty()
        && let Some(offer) = machine
            .offers
            .iter()
            .find(|o| !o.is_proxy() && o.pxe_client)
    {
        return Finding::ServerSendsPxeClient {
            server: offer.server,
            offers: machine.offers.clone(),
        };
    }
    if machine.pxe_acks.is_empty() && !machine.pxe_requests.is_empty() {
        let mut servers: Vec<_> = machine.pxe_requests.iter().map(|(_, s)| *s).collect();
        servers.sort();
        servers.dedup();
        return Finding::NoPxeAnswer {
            servers,
            requests: machine.pxe_requests.len(),
        };
    }
    match choices.into_iter().last() {
        Some((server, file)) => Finding::NeverRequested { file, server },
        None => Finding::NoBootFile {
            offers: machine.offers.clone(),
        },
    }
}

/// The TFTP part: the first file fetched, the last, and what failed after.
fn tftp(transfers: &[Transfer], end: Duration) -> Finding {
    let real: Vec<&Transfer> = transfers
        .iter()
        .filter(|t| t.outcome != Outcome::Probe)
        .collect();
    let Some(&last_request) = real.last() else {
        // Only probes (transfers is not empty).
        let probe = &transfers[transfers.len() - 1];
        return Finding::Probed {
            file: probe.file.clone(),
            server: probe.server,
        };
    };
    let completed: Vec<&Transfer> = real
        .iter()
        .copied()
        .filter(|t| t.outcome == Outcome::Complete)
        .collect();
    let (Some(first), Some(last)) = (completed.first(), completed.last()) else {
        return failure(last_request, end);
    };
    let last_index = real
        .iter()
        .rposition(|t| std::ptr::eq(*t, *last))
        .unwrap_or(real.len());
    let failed: Vec<String> = real
        .iter()
        .skip(last_index + 1)
        .map(|t| failure_brief(t, end))
        .collect();
    let skipped = failed.len().saturating_sub(MAX_LISTED);
    let mut after: Vec<String> = failed.into_iter().skip(skipped).collect();
    if skipped > 0 {
        after.insert(0, format!("{skipped} more"));
    }
    Finding::Booted {
        first: first.file.clone(),
        last: last.file.clone(),
        files: completed.len(),
        bytes: completed.iter().map(|t| t.bytes).sum(),
        after,
    }
}

/// The finding for a transfer that did not complete.
fn failure(transfer: &Transfer, end: Duration) -> Finding {
    let file = transfer.file.clone();
    let server = transfer.server;
    if transfer.protocol == Protocol::Http {
        return Finding::HttpFailed {
            what: http_failure(transfer),
            file,
            server,
        };
    }
    match &transfer.outcome {
        Outcome::Waiting if end.saturating_sub(transfer.at) >= OPEN_TIMEOUT => {
            Finding::OpenTimeout {
                file,
                server,
                requests: transfer.requests,
            }
        }
        Outcome::Waiting => Finding::CaptureEnded { file, server },
        Outcome::ServerError { code: 1, message } => Finding::NotFound {
            file,
            server,
            message: message.clone(),
        },
        Outcome::ServerError { code, message } => Finding::TftpError {
            file,
            server,
            code: *code,
            message: message.clone(),
        },
        Outcome::ClientError { code, message } => Finding::ClientAborted {
            file,
            code: *code,
            message: message.clone(),
        },
        Outcome::Transferring | Outcome::Complete | Outcome::Probe => Finding::Stalled {
            file,
            server,
            bytes: transfer.bytes,
            block: transfer.block,
        },
    }
}

/// What went wrong with an HTTP request, in a few words.
fn http_failure(transfer: &Transfer) -> String {
    match &transfer.outcome {
        Outcome::ServerError { code: 404, .. } => "not found (HTTP 404)".into(),
        Outcome::ServerError { code, message } => format!("refused (HTTP {code} {message})"),
        Outcome::Waiting => "no HTTP response".into(),
        _ => match transfer.expected {
            Some(expected) => format!(
                "stopped after {} of {expected} bytes over HTTP",
                transfer.bytes
            ),
            None => format!("stopped after {} bytes over HTTP", transfer.bytes),
        },
    }
}

/// A failed transfer after the last fetched file, in a few words.
fn failure_brief(transfer: &Transfer, end: Duration) -> String {
    let file = &transfer.file;
    match failure(transfer, end) {
        Finding::HttpFailed { what, .. } => format!("{file} {what}"),
        Finding::OpenTimeout { .. } => format!("{file} unanswered (open timeout)"),
        Finding::CaptureEnded { .. } => format!("{file} unanswered when the capture ended"),
        Finding::NotFound { .. } => format!("{file} not found"),
        Finding::TftpError { code, .. } => format!("{file} refused (TFTP error {code})"),
        Finding::ClientAborted { code, .. } => format!("{file} abandoned (TFTP error {code})"),
        _ => format!("{file} stopped after {} bytes", transfer.bytes),
    }
}

/// Every (server, boot file) offered: in offers, then in port-4011 ACKs.
fn boot_choices(machine: &Machine) -> Vec<(Ipv4Addr, String)> {
    let mut choices: Vec<(Ipv4Addr, String)> = Vec::new();
    for offer in machine.offers.iter().chain(&machine.pxe_acks) {
        if let Some(file) = &offer.file
            && !choices.iter().any(|(s, f)| *s == offer.server && f == file)
        {
            choices.push((offer.server, file.clone()));
        }
    }
    choices
}

/// The furthest DHCP step that succeeded.
fn last_step(machine: &Machine) -> Option<String> {
    if let Some(ack) = machine.pxe_acks.last() {
        return Some(format!(
            "port 4011 ACK from {}{}",
            ack.server,
            ack.file
                .as_ref()
                .map(|f| format!(" (file {f})"))
                .unwrap_or_default()
        ));
    }
    if let Some((server, address)) = machine.ack {
        return Some(format!("DHCP ACK from {server} ({address})"));
    }
    let servers: Vec<String> = machine
        .offers
        .iter()
        .map(|o| o.server.to_string())
        .collect();
    (!servers.is_empty()).then(|| format!("offers from {}", servers.join(", ")))
}

/// The architecture in the firmware's words.
pub fn arch_name(code: u16) -> String {
    match Arch::from_code(code) {
        Some(Arch::Bios) => "x86 BIOS".into(),
        Some(Arch::Ia32Uefi) => "x86 UEFI".into(),
        Some(Arch::X64Uefi) => "x64 UEFI".into(),
        Some(Arch::Arm32Uefi) => "ARM32 UEFI".into(),
        Some(Arch::Arm64Uefi) => "ARM64 UEFI".into(),
        Some(Arch::Ia32UefiHttp) => "x86 UEFI HTTP".into(),
        Some(Arch::X64UefiHttp) => "x64 UEFI HTTP".into(),
        Some(Arch::Arm64UefiHttp) => "ARM64 UEFI HTTP".into(),
        None => format!("arch {code}"),
    }
}

/// One offer in a few words: `10.0.0.1 (address, no PXE options)`.
struct OfferBrief<'a>(&'a Offer);

impl fmt::Display for OfferBrief<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offer = self.0;
        let kind = if offer.is_proxy() { "proxy" } else { "address" };
        let pxe = if offer.vendor_options || offer.pxe_client {
            "PXE options"
        } else {
            "no PXE options"
        };
        match &offer.file {
            Some(file) => write!(f, "{} ({kind}, {pxe}, file {file})", offer.server),
            None => write!(f, "{} ({kind}, {pxe})", offer.server),
        }
    }
}

fn offers_list(offers: &[Offer]) -> String {
    offers
        .iter()
        .map(|o| OfferBrief(o).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: impl Into<u64>, word: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::HttpFailed { file, server, what } => {
                write!(f, "the HTTP request for {file} to {server}: {what}")
            }
            Finding::NoOffer { discovers, over } => write!(
                f,
                "PXE-E51 no DHCP offer ({} over {:.1} s, nothing answered)",
                plural(*discovers, "DISCOVER"),
                over.as_secs_f64()
            ),
            Finding::ServerSendsPxeClient { server, offers } => write!(
                f,
                "the DHCP server {server} itself sends option 60 PXEClient with no boot file, \
                 so the firmware takes it for the PXE server and ignores proxies; \
                 remove option 60 from its offers (offers from {})",
                offers_list(offers)
            ),
            Finding::NoBootFile { offers } => write!(
                f,
                "PXE-E53 no boot file in any offer (offers from {})",
                offers_list(offers)
            ),
            Finding::NoPxeAnswer { servers, requests } => write!(
                f,
                "PXE-E55 no answer on port 4011 from {} ({})",
                servers
                    .iter()
                    .map(Ipv4Addr::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                plural(*requests as u64, "request")
            ),
            Finding::NeverRequested { file, server } => write!(
                f,
                "offered {file} by {server}, but never requested it over TFTP"
            ),
            Finding::Probed { file, server } => write!(
                f,
                "asked {server} the size of {file}, then requested nothing"
            ),
            Finding::OpenTimeout {
                file,
                server,
                requests,
            } => write!(
                f,
                "PXE-E32 TFTP open timeout: {server} never answered the request for {file} ({})",
                plural(*requests, "request")
            ),
            Finding::CaptureEnded { file, server } => write!(
                f,
                "requested {file} from {server}; the capture ended before an answer"
            ),
            Finding::NotFound {
                file,
                server,
                message,
            } => write!(
                f,
                "PXE-E3B file not found: {server} has no {file} (TFTP error 1 {message:?})"
            ),
            Finding::TftpError {
                file,
                server,
                code,
                message,
            } => write!(
                f,
                "PXE-E36 TFTP error {code} from {server} for {file} ({message:?})"
            ),
            Finding::ClientAborted {
                file,
                code,
                message,
            } => write!(
                f,
                "the client abandoned {file} (TFTP error {code} {message:?})"
            ),
            Finding::Stalled {
                file,
                server,
                bytes,
                block,
            } => write!(
                f,
                "the transfer of {file} from {server} stopped after {bytes} bytes (block {block})"
            ),
            Finding::Booted {
                first,
                last,
                files,
                bytes,
                after,
            } => {
                write!(f, "booted {first}")?;
                if files > &1 {
                    write!(f, ", then stopped after {last}")?;
                } else if after.is_empty() {
                    write!(f, " and requested nothing after it")?;
                } else {
                    write!(f, ", then stopped after it")?;
                }
                write!(f, " ({}, {bytes} bytes)", plural(*files as u64, "file"))?;
                if !after.is_empty() {
                    write!(f, "; then {}", after.join(", "))?;
                }
                Ok(())
            }
            Finding::ProxiesDisagree { choices, then } => write!(
                f,
                "two proxies disagree ({}); {then}",
                choices
                    .iter()
                    .map(|(server, file)| format!("{server} offers {file}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.mac;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")?;
        let label: Vec<String> = self
            .arch
            .map(arch_name)
            .into_iter()
            .chain(self.address.map(|a| a.to_string()))
            .collect();
        if !label.is_empty() {
            write!(f, " ({})", label.join(", "))?;
        }
        write!(f, ": {}", self.finding)?;
        if let Some(step) = &self.last_step {
            write!(f, "; last step that succeeded: {step}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;

    use zerocopy::IntoBytes;

    use super::*;
    use crate::doctor::follow::Follow;
    use crate::doctor::frame::Datagram;
    use crate::wire::dhcp::{self as wire_dhcp, Header, ReplyBuilder, message_type};
    use zerocopy::FromZeros;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const UEFI_CLASS: &[u8] = b"PXEClient:Arch:00007:UNDI:003000";

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(1000.0 + s)
    }

    /// A client message: op 1, the MAC, option 53, 93 and 60.
    fn request(kind: u8) -> Vec<u8> {
        let mut header = Header::new_zeroed();
        header.op = wire_dhcp::BOOTREQUEST;
        header.htype = 1;
        header.hlen = 6;
        header.chaddr[..6].copy_from_slice(&MAC);
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(&wire_dhcp::MAGIC_COOKIE);
        bytes.extend_from_slice(&[53, 1, kind, 93, 2, 0, 7, 60, UEFI_CLASS.len() as u8]);
        bytes.extend_from_slice(UEFI_CLASS);
        bytes.push(255);
        bytes
    }

    /// A server reply from `server` leasing `yiaddr`, with a file and
    /// option 60 `PXEClient` when given.
    fn reply(kind: u8, server: [u8; 4], yiaddr: [u8; 4], file: Option<&str>, pxe: bool) -> Vec<u8> {
        let mut buf = [0; 600];
        let mut builder = ReplyBuilder::new(&mut buf).unwrap();
        let header = builder.header_mut();
        header.htype = 1;
        header.hlen = 6;
        header.chaddr[..6].copy_from_slice(&MAC);
        header.yiaddr = yiaddr;
        header.siaddr = server;
        if let Some(file) = file {
            header.set_file(file.as_bytes()).unwrap();
        }
        builder.push_option(53, &[kind]).unwrap();
        builder.push_option(54, &server).unwrap();
        if pxe {
            builder.push_option(60, b"PXEClient").unwrap();
        }
        let len = builder.finish().unwrap();
        buf[..len].to_vec()
    }

    struct Scenario(Follow);

    impl Scenario {
        fn new() -> Self {
            Scenario(Follow::new(None))
        }

        fn send(&mut self, at: f64, src: &str, dst: &str, payload: &[u8]) -> &mut Self {
            let datagram = Datagram {
                src_mac: MAC,
                src: addr(src),
                dst: addr(dst),
                payload,
            };
            self.0.datagram(secs(at), &datagram);
            self
        }

        fn discover(&mut self, at: f64) -> &mut Self {
            self.send(
                at,
                "0.0.0.0:68",
                "255.255.255.255:67",
                &request(message_type::DISCOVER),
            )
        }

        fn lease(&mut self, at: f64) -> &mut Self {
            self.discover(at)
                .send(
                    at + 0.1,
                    "10.0.0.1:67",
                    "255.255.255.255:68",
                    &reply(2, [10, 0, 0, 1], [10, 0, 0, 57], None, false),
                )
                .send(
                    at + 0.2,
                    "0.0.0.0:68",
                    "255.255.255.255:67",
                    &request(message_type::REQUEST),
                )
                .send(
                    at + 0.3,
                    "10.0.0.1:67",
                    "255.255.255.255:68",
                    &reply(5, [10, 0, 0, 1], [10, 0, 0, 57], None, false),
                )
        }

        fn proxy_offer(&mut self, at: f64, server: [u8; 4], file: Option<&str>) -> &mut Self {
            let src = format!("{}:67", Ipv4Addr::from(server));
            self.send(
                at,
                &src,
                "255.255.255.255:68",
                &reply(2, server, [0; 4], file, true),
            )
        }

        /// An RRQ from port `port`, then `blocks` full 512-byte blocks and
        /// a short last one (when `blocks` is `Some`), or ERROR 1.
        fn fetch(&mut self, at: f64, port: u16, file: &str, blocks: Option<u16>) -> &mut Self {
            let client = format!("10.0.0.57:{port}");
            let mut rrq = vec![0, 1];
            rrq.extend_from_slice(file.as_bytes());
            rrq.extend_from_slice(b"\0octet\0");
            self.send(at, &client, "10.0.0.2:69", &rrq);
            match blocks {
                Some(full) => {
                    for block in 1..=full + 1 {
                        let mut data = vec![0, 3];
                        data.extend_from_slice(&block.to_be_bytes());
                        data.resize(if block <= full { 516 } else { 104 }, 7);
                        self.send(at + 0.01, "10.0.0.2:50000", &client, &data);
                    }
                }
                None => {
                    self.send(
                        at + 0.01,
                        "10.0.0.2:50000",
                        &client,
                        b"\0\x05\0\x01File not found\0",
                    );
                }
            }
            self
        }

        /// One TCP segment from `src` to `dst`, starting at `seq`.
        fn tcp(&mut self, at: f64, src: &str, dst: &str, seq: u32, payload: &[u8]) -> &mut Self {
            let segment = crate::doctor::frame::Segment {
                src_mac: MAC,
                src: addr(src),
                dst: addr(dst),
                seq,
                closing: false,
                payload,
                len: payload.len(),
            };
            self.0.segment(secs(at), &segment);
            self
        }

        fn verdict(&self) -> String {
            let verdicts = crate::doctor::verdicts(&self.0, None);
            assert_eq!(verdicts.len(), 1, "{verdicts:?}");
            verdicts[0].to_string()
        }
    }

    #[test]
    fn discovers_without_offer_are_pxe_e51() {
        let mut s = Scenario::new();
        s.discover(0.0).discover(4.0).discover(8.0);
        assert_eq!(
            s.verdict(),
            "52:54:00:12:34:56 (x64 UEFI): PXE-E51 no DHCP offer (3 DISCOVERs over 8.0 s, nothing answered)"
        );
    }

    #[test]
    fn an_address_offer_alone_is_pxe_e53() {
        let mut s = Scenario::new();
        s.lease(0.0);
        assert_eq!(
            s.verdict(),
            "52:54:00:12:34:56 (x64 UEFI, 10.0.0.57): PXE-E53 no boot file in any offer \
             (offers from 10.0.0.1 (address, no PXE options)); \
             last step that succeeded: DHCP ACK from 10.0.0.1 (10.0.0.57)"
        );
    }

    #[test]
    fn an_unanswered_port_4011_request_is_pxe_e55() {
        let mut s = Scenario::new();
        s.lease(0.0)
            .proxy_offer(0.15, [10, 0, 0, 2], None)
            .send(
                1.0,
                "10.0.0.57:68",
                "10.0.0.2:4011",
                &request(message_type::REQUEST),
            )
            .send(
                5.0,
                "10.0.0.57:68",
                "10.0.0.2:4011",
                &request(message_type::REQUEST),
            );
        let verdict = s.verdict();
        assert!(
            verdict.contains(": PXE-E55 no answer on port 4011 from 10.0.0.2 (2 requests)"),
            "{verdict}"
        );
    }

    #[test]
    fn a_boot_is_followed_to_the_last_file_fetched() {
        let mut s = Scenario::new();
        s.lease(0.0)
            .proxy_offer(0.15, [10, 0, 0, 2], None)
            .send(
                1.0,
                "10.0.0.57:68",
                "10.0.0.2:4011",
                &request(message_type::REQUEST),
            )
            .send(
                1.1,
                "10.0.0.2:4011",
                "10.0.0.57:68",
                &reply(5, [10, 0, 0, 2], [0; 4], Some("grubx64.efi"), true),
            )
            .fetch(2.0, 1000, "grubx64.efi", Some(3))
            .fetch(3.0, 1001, "grub/grub.cfg", Some(0))
            .fetch(4.0, 1002, "grub/x86_64-efi/normal.mod", None);
        assert_eq!(
            s.verdict(),
            "52:54:00:12:34:56 (x64 UEFI, 10.0.0.57): booted grubx64.efi, then stopped after \
             grub/grub.cfg (2 files, 1736 bytes); then grub/x86_64-efi/normal.mod not found"
        );
    }

    #[test]
    fn tftp_failures_use_the_firmware_codes() {
        let mut s = Scenario::new();
        s.lease(0.0)
            .proxy_offer(0.15, [10, 0, 0, 2], Some("pxelinux.0"));
        let mut missing = Scenario::new();
        missing
            .lease(0.0)
            .proxy_offer(0.15, [10, 0, 0, 2], Some("pxelinux.0"))
            .fetch(1.0, 1000, "pxelinux.0", None);
        assert!(
            missing
                .verdict()
                .contains("PXE-E3B file not found: 10.0.0.2 has no pxelinux.0")
        );

        let rrq = b"\0\x01pxelinux.0\0octet\0";
        s.send(1.0, "10.0.0.57:1000", "10.0.0.2:69", rrq)
            .send(3.0, "10.0.0.57:1000", "10.0.0.2:69", rrq)
            .send(5.0, "10.0.0.57:1001", "10.0.0.3:1", b"other");
        let verdict = s.verdict();
        assert!(
            verdict.contains("PXE-E32 TFTP open timeout: 10.0.0.2 never answered the request for pxelinux.0 (2 requests)"),
            "{verdict}"
        );
        assert!(verdict.ends_with("last step that succeeded: DHCP ACK from 10.0.0.1 (10.0.0.57)"));
    }

    #[test]
    fn a_size_probe_is_not_a_failure_and_two_files_are_a_disagreement() {
        let mut s = Scenario::new();
        s.lease(0.0)
            .proxy_offer(0.15, [10, 0, 0, 2], Some("pxelinux.0"))
            .proxy_offer(0.16, [10, 0, 0, 3], Some("other.0"))
            .send(
                1.0,
                "10.0.0.57:999",
                "10.0.0.2:69",
                b"\0\x01pxelinux.0\0octet\0tsize\x000\0",
            )
            .send(
                1.01,
                "10.0.0.2:40000",
                "10.0.0.57:999",
                b"\0\x06tsize\x001640\0",
            )
            .send(1.02, "10.0.0.57:999", "10.0.0.2:40000", b"\0\x05\0\x08\0")
            .fetch(1.1, 1000, "pxelinux.0", Some(3));
        assert_eq!(
            s.verdict(),
            "52:54:00:12:34:56 (x64 UEFI, 10.0.0.57): two proxies disagree (10.0.0.2 offers \
             pxelinux.0, 10.0.0.3 offers other.0); booted pxelinux.0 and requested nothing after it \
             (1 file, 1636 bytes)"
        );
    }

    #[test]
    fn the_dhcp_server_sending_pxeclient_is_named() {
        let mut s = Scenario::new();
        s.discover(0.0).send(
            0.1,
            "10.0.0.1:67",
            "255.255.255.255:68",
            &reply(2, [10, 0, 0, 1], [10, 0, 0, 57], None, true),
        );
        assert!(
            s.verdict()
                .contains("the DHCP server 10.0.0.1 itself sends option 60 PXEClient")
        );
    }

    #[test]
    fn http_requests_are_followed_like_tftp_transfers() {
        let client = "10.0.0.57:40000";
        let server = "10.0.0.2:8080";
        let mut s = Scenario::new();
        s.lease(0.0)
            .proxy_offer(0.15, [10, 0, 0, 2], Some("undionly.kpxe"))
            .fetch(1.0, 1000, "undionly.kpxe", Some(1))
            .tcp(
                2.0,
                client,
                server,
                1,
                b"GET /vmlinuz HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            .tcp(
                2.1,
                server,
                client,
                100,
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n1234",
            );
        // The rest in one segment, then that segment again (retransmitted):
        // counted once.
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n1234".len() as u32;
        s.tcp(2.2, server, client, 100 + head, b"567890")
            .tcp(2.3, server, client, 100 + head, b"567890")
            .tcp(3.0, client, server, 40, b"GET /initrd.img HTTP/1.1\r\n\r\n")
            .tcp(
                3.1,
                server,
                client,
                200,
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            );
        assert_eq!(
            s.verdict(),
            "52:54:00:12:34:56 (x64 UEFI, 10.0.0.57): booted undionly.kpxe, then stopped after \
             vmlinuz (2 files, 622 bytes); then initrd.img not found (HTTP 404)"
        );

        let mut cut = Scenario::new();
        cut.lease(0.0)
            .tcp(2.0, client, server, 1, b"HEAD /vmlinuz HTTP/1.1\r\n\r\n")
            .tcp(
                2.1,
                server,
                client,
                100,
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            )
            .tcp(3.0, client, server, 40, b"GET /vmlinuz HTTP/1.1\r\n\r\n")
            .tcp(
                3.1,
                server,
                client,
                200,
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12",
            );
        assert!(
            cut.verdict().contains(
                ": the HTTP request for vmlinuz to 10.0.0.2: stopped after 2 of 10 bytes over HTTP;"
            ),
            "{}",
            cut.verdict()
        );

        let mut silent = Scenario::new();
        silent
            .lease(0.0)
            .tcp(2.0, client, server, 1, b"GET /boot.ipxe HTTP/1.1\r\n\r\n");
        assert!(
            silent
                .verdict()
                .contains(": the HTTP request for boot.ipxe to 10.0.0.2: no HTTP response;"),
            "{}",
            silent.verdict()
        );
    }
}

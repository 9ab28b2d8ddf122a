//! `rackboot doctor` end to end: pcap files built here (Ethernet/IPv4/UDP
//! frames with correct headers around DHCP messages crafted with dhcproto
//! and hand-written TFTP), one per verdict kind, read by the binary with
//! `--pcap`; and one live capture on the loopback of a network namespace
//! this test creates.
//!
//! `DOCTOR_WRITE_FIXTURES=1` also writes each capture to
//! tests/fixtures/doctor/NAME.pcap (the committed fixtures, and the fuzz
//! target's seeds); `committed_fixtures_give_the_same_verdicts` checks they
//! are current.

mod common;
mod netns;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use dhcproto::v4::{Architecture, DhcpOption, Flags, Message, MessageType, Opcode};
use dhcproto::{Encodable, Encoder};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const OTHER_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
const LABEL: &str = "52:54:00:12:34:56 (x64 UEFI, 10.0.0.57)";
const DHCP_SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PROXY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SECOND_PROXY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const LEASE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 57);
const BROADCAST: Ipv4Addr = Ipv4Addr::BROADCAST;
const UEFI_CLASS: &[u8] = b"PXEClient:Arch:00007:UNDI:003000";

fn sock(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

/// An Ethernet/IPv4/UDP frame with a correct IPv4 header checksum and
/// lengths (UDP checksum 0: "none", as RFC 768 allows).
fn udp_frame(src_mac: [u8; 6], src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut frame = Vec::with_capacity(14 + total);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&src.ip().octets());
    ip.extend_from_slice(&dst.ip().octets());
    let sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let checksum = !((folded & 0xffff) + (folded >> 16)) as u16;
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&src.port().to_be_bytes());
    frame.extend_from_slice(&dst.port().to_be_bytes());
    frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(payload);
    frame
}

fn encode(message: &Message) -> Vec<u8> {
    let mut bytes = Vec::new();
    message
        .encode(&mut Encoder::new(&mut bytes))
        .expect("encode");
    bytes
}

/// A UEFI x64 client message (DISCOVER, or REQUEST).
fn client_message(mac: [u8; 6], kind: MessageType) -> Vec<u8> {
    let mut message = Message::new(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    message
        .set_xid(0x1234_5678)
        .set_flags(Flags::default().set_broadcast());
    let opts = message.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ClientSystemArchitecture(Architecture::from(7)));
    opts.insert(DhcpOption::ClassIdentifier(UEFI_CLASS.to_vec()));
    encode(&message)
}

/// What a server puts in a reply.
#[derive(Clone, Copy, Default)]
struct Reply<'a> {
    lease: Option<Ipv4Addr>,
    file: Option<&'a str>,
    pxe_client: bool,
    vendor_options: bool,
}

fn server_message(mac: [u8; 6], kind: MessageType, server: Ipv4Addr, reply: Reply<'_>) -> Vec<u8> {
    let mut message = Message::new(
        Ipv4Addr::UNSPECIFIED,
        reply.lease.unwrap_or(Ipv4Addr::UNSPECIFIED),
        server,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    message.set_opcode(Opcode::BootReply).set_xid(0x1234_5678);
    if let Some(file) = reply.file {
        message.set_fname_str(file);
    }
    let opts = message.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(server));
    if reply.pxe_client {
        opts.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
    }
    if reply.vendor_options {
        opts.insert(DhcpOption::VendorExtensions(vec![6, 1, 8, 255]));
    }
    encode(&message)
}

/// A capture being written: frames with their times (seconds from an
/// arbitrary epoch).
struct Capture {
    frames: Vec<(f64, Vec<u8>)>,
}

impl Capture {
    fn new() -> Self {
        Capture { frames: Vec::new() }
    }

    fn udp(
        &mut self,
        at: f64,
        mac: [u8; 6],
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: &[u8],
    ) -> &mut Self {
        self.frames.push((at, udp_frame(mac, src, dst, payload)));
        self
    }

    fn discover(&mut self, at: f64) -> &mut Self {
        let payload = client_message(MAC, MessageType::Discover);
        self.udp(
            at,
            MAC,
            sock(Ipv4Addr::UNSPECIFIED, 68),
            sock(BROADCAST, 67),
            &payload,
        )
    }

    fn offer(&mut self, at: f64, server: Ipv4Addr, reply: Reply<'_>) -> &mut Self {
        let payload = server_message(MAC, MessageType::Offer, server, reply);
        self.udp(at, [2; 6], sock(server, 67), sock(BROADCAST, 68), &payload)
    }

    /// DISCOVER, an address offer from the DHCP server, REQUEST, ACK.
    fn lease(&mut self, at: f64) -> &mut Self {
        let lease = Reply {
            lease: Some(LEASE),
            ..Reply::default()
        };
        let request = client_message(MAC, MessageType::Request);
        let ack = server_message(MAC, MessageType::Ack, DHCP_SERVER, lease);
        self.discover(at)
            .offer(at + 0.1, DHCP_SERVER, lease)
            .udp(
                at + 0.3,
                MAC,
                sock(Ipv4Addr::UNSPECIFIED, 68),
                sock(BROADCAST, 67),
                &request,
            )
            .udp(
                at + 0.4,
                [2; 6],
                sock(DHCP_SERVER, 67),
                sock(BROADCAST, 68),
                &ack,
            )
    }

    /// A UEFI proxy offer: PXEClient, no file (the firmware asks on 4011).
    fn proxy_offer(&mut self, at: f64, server: Ipv4Addr, file: Option<&str>) -> &mut Self {
        self.offer(
            at,
            server,
            Reply {
                file,
                pxe_client: true,
                ..Reply::default()
            },
        )
    }

    fn pxe_request(&mut self, at: f64, server: Ipv4Addr) -> &mut Self {
        let payload = client_message(MAC, MessageType::Request);
        self.udp(at, MAC, sock(LEASE, 68), sock(server, 4011), &payload)
    }

    fn pxe_ack(&mut self, at: f64, server: Ipv4Addr, file: &str) -> &mut Self {
        let reply = Reply {
            file: Some(file),
            pxe_client: true,
            ..Reply::default()
        };
        let payload = server_message(MAC, MessageType::Ack, server, reply);
        self.udp(at, [2; 6], sock(server, 4011), sock(LEASE, 68), &payload)
    }

    fn rrq(&mut self, at: f64, port: u16, server: Ipv4Addr, file: &str) -> &mut Self {
        let mut payload = vec![0, 1];
        payload.extend_from_slice(file.as_bytes());
        payload.extend_from_slice(b"\0octet\0blksize\x001468\0");
        self.udp(at, MAC, sock(LEASE, port), sock(server, 69), &payload)
    }

    /// RRQ, OACK blksize 1468, then `size` bytes in DATA blocks.
    fn fetch(
        &mut self,
        at: f64,
        port: u16,
        server: Ipv4Addr,
        file: &str,
        size: usize,
    ) -> &mut Self {
        let client = sock(LEASE, port);
        let tid = sock(server, 40000 + port);
        self.rrq(at, port, server, file)
            .udp(at + 0.01, [2; 6], tid, client, b"\0\x06blksize\x001468\0")
            .udp(at + 0.02, MAC, client, tid, &[0, 4, 0, 0]);
        let mut block: u16 = 1;
        let mut left = size;
        loop {
            let chunk = left.min(1468);
            let mut data = vec![0, 3];
            data.extend_from_slice(&block.to_be_bytes());
            data.resize(4 + chunk, 0x5a);
            let t = at + 0.03 + f64::from(block) * 0.001;
            self.udp(t, [2; 6], tid, client, &data).udp(
                t,
                MAC,
                client,
                tid,
                &[0, 4, data[2], data[3]],
            );
            left -= chunk;
            block += 1;
            if chunk < 1468 {
                return self;
            }
        }
    }

    fn not_found(&mut self, at: f64, port: u16, server: Ipv4Addr, file: &str) -> &mut Self {
        let tid = sock(server, 40000 + port);
        self.rrq(at, port, server, file).udp(
            at + 0.01,
            [2; 6],
            tid,
            sock(LEASE, port),
            b"\0\x05\0\x01File not found\0",
        )
    }

    /// A classic pcap: little-endian microseconds, or big-endian
    /// nanoseconds.
    fn to_pcap(&self, big_endian_nanos: bool) -> Vec<u8> {
        let word = |v: u32| {
            if big_endian_nanos {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let half = |v: u16| {
            if big_endian_nanos {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut out = Vec::new();
        out.extend_from_slice(&word(if big_endian_nanos {
            0xa1b2_3c4d
        } else {
            0xa1b2_c3d4
        }));
        out.extend_from_slice(&half(2));
        out.extend_from_slice(&half(4));
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&word(65535));
        out.extend_from_slice(&word(1));
        let mut frames = self.frames.clone();
        frames.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (at, frame) in frames {
            let at = Duration::from_secs_f64(1_700_000_000.0 + at);
            let fraction = if big_endian_nanos {
                at.subsec_nanos()
            } else {
                at.subsec_micros()
            };
            out.extend_from_slice(&word(at.as_secs() as u32));
            out.extend_from_slice(&word(fraction));
            out.extend_from_slice(&word(frame.len() as u32));
            out.extend_from_slice(&word(frame.len() as u32));
            out.extend_from_slice(&frame);
        }
        out
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/doctor")
}

fn doctor(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .arg("doctor")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run rackboot doctor")
}

/// Writes the capture (and the fixture when asked), runs doctor on it, and
/// returns its stdout lines.
fn verdicts(name: &str, capture: &Capture, args: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.pcap"));
    let bytes = capture.to_pcap(false);
    std::fs::write(&path, &bytes).unwrap();
    if std::env::var_os("DOCTOR_WRITE_FIXTURES").is_some() {
        std::fs::write(fixture_dir().join(format!("{name}.pcap")), &bytes).unwrap();
    }
    let mut all = vec!["--pcap", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = doctor(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "doctor failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

/// The one verdict line of a single-machine capture.
fn verdict(name: &str, capture: &Capture) -> String {
    let lines = verdicts(name, capture, &[]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines.into_iter().next().unwrap()
}

fn no_offer() -> Capture {
    let mut c = Capture::new();
    c.discover(0.0).discover(4.0).discover(12.0);
    c
}

fn no_boot_file() -> Capture {
    let mut c = Capture::new();
    c.lease(0.0);
    c
}

fn no_4011_answer() -> Capture {
    let mut c = Capture::new();
    c.lease(0.0)
        .proxy_offer(0.2, PROXY, None)
        .pxe_request(1.0, PROXY)
        .pxe_request(3.0, PROXY)
        .pxe_request(7.0, PROXY);
    c
}

fn dhcp_server_option_60() -> Capture {
    let mut c = Capture::new();
    c.discover(0.0)
        .offer(
            0.1,
            DHCP_SERVER,
            Reply {
                lease: Some(LEASE),
                pxe_client: true,
                ..Reply::default()
            },
        )
        .proxy_offer(0.2, PROXY, None)
        .discover(4.0);
    c
}

fn tftp_open_timeout() -> Capture {
    let mut c = Capture::new();
    c.lease(0.0)
        .proxy_offer(0.2, PROXY, None)
        .pxe_request(1.0, PROXY)
        .pxe_ack(1.01, PROXY, "grubx64.efi")
        .rrq(2.0, 1000, PROXY, "grubx64.efi")
        .rrq(3.0, 1000, PROXY, "grubx64.efi")
        .rrq(5.0, 1000, PROXY, "grubx64.efi")
        .discover(20.0);
    c
}

fn file_not_found() -> Capture {
    let mut c = Capture::new();
    c.lease(0.0)
        .proxy_offer(0.2, PROXY, None)
        .pxe_request(1.0, PROXY)
        .pxe_ack(1.01, PROXY, "grubx64.efi")
        .not_found(2.0, 1000, PROXY, "grubx64.efi");
    c
}

fn stopped_after() -> Capture {
    let mut c = Capture::new();
    c.lease(0.0)
        .proxy_offer(0.2, PROXY, None)
        .pxe_request(1.0, PROXY)
        .pxe_ack(1.01, PROXY, "grubx64.efi")
        .fetch(2.0, 1000, PROXY, "grubx64.efi", 5000)
        .fetch(3.0, 1001, PROXY, "grub/grub.cfg", 300)
        .not_found(4.0, 1002, PROXY, "grub/x86_64-efi/normal.mod")
        .not_found(4.1, 1003, PROXY, "grub/x86_64-efi/command.lst");
    c
}

fn proxies_disagree() -> Capture {
    let mut c = Capture::new();
    c.lease(0.0)
        .proxy_offer(0.2, PROXY, Some("grubx64.efi"))
        .proxy_offer(0.25, SECOND_PROXY, Some("ipxe.efi"))
        .not_found(2.0, 1000, SECOND_PROXY, "ipxe.efi");
    c
}

/// A capture for one verdict kind.
type Scenario = fn() -> Capture;

/// `stopped_after`, and a second machine nothing answers.
fn two_machines() -> Capture {
    let mut c = stopped_after();
    let other = client_message(OTHER_MAC, MessageType::Discover);
    c.udp(
        0.5,
        OTHER_MAC,
        sock(Ipv4Addr::UNSPECIFIED, 68),
        sock(BROADCAST, 67),
        &other,
    );
    c
}

#[test]
fn discovers_without_an_offer_are_pxe_e51() {
    assert_eq!(
        verdict("no_offer", &no_offer()),
        "52:54:00:12:34:56 (x64 UEFI): PXE-E51 no DHCP offer (3 DISCOVERs over 12.0 s, nothing answered)"
    );
}

#[test]
fn offers_without_a_boot_file_are_pxe_e53() {
    assert_eq!(
        verdict("no_boot_file", &no_boot_file()),
        format!(
            "{LABEL}: PXE-E53 no boot file in any offer (offers from 10.0.0.1 (address, no PXE options)); \
             last step that succeeded: DHCP ACK from 10.0.0.1 (10.0.0.57)"
        )
    );
}

#[test]
fn unanswered_port_4011_requests_are_pxe_e55() {
    assert_eq!(
        verdict("no_4011_answer", &no_4011_answer()),
        format!(
            "{LABEL}: PXE-E55 no answer on port 4011 from 10.0.0.2 (3 requests); \
             last step that succeeded: DHCP ACK from 10.0.0.1 (10.0.0.57)"
        )
    );
}

#[test]
fn the_dhcp_server_sending_option_60_is_named() {
    let line = verdict("dhcp_server_option_60", &dhcp_server_option_60());
    assert!(
        line.starts_with(&format!(
            "{LABEL}: the DHCP server 10.0.0.1 itself sends option 60 PXEClient with no boot file"
        )),
        "{line}"
    );
    assert!(
        line.contains("offers from 10.0.0.1 (address, PXE options), 10.0.0.2 (proxy, PXE options)"),
        "{line}"
    );
}

#[test]
fn an_unanswered_read_request_is_pxe_e32() {
    assert_eq!(
        verdict("tftp_open_timeout", &tftp_open_timeout()),
        format!(
            "{LABEL}: PXE-E32 TFTP open timeout: 10.0.0.2 never answered the request for grubx64.efi \
             (3 requests); last step that succeeded: port 4011 ACK from 10.0.0.2 (file grubx64.efi)"
        )
    );
}

#[test]
fn a_missing_boot_file_is_file_not_found() {
    assert_eq!(
        verdict("file_not_found", &file_not_found()),
        format!(
            "{LABEL}: PXE-E3B file not found: 10.0.0.2 has no grubx64.efi (TFTP error 1 \"File not found\"); \
             last step that succeeded: port 4011 ACK from 10.0.0.2 (file grubx64.efi)"
        )
    );
}

#[test]
fn a_boot_that_stopped_names_the_last_file() {
    assert_eq!(
        verdict("stopped_after", &stopped_after()),
        format!(
            "{LABEL}: booted grubx64.efi, then stopped after grub/grub.cfg (2 files, 5300 bytes); \
             then grub/x86_64-efi/normal.mod not found, grub/x86_64-efi/command.lst not found"
        )
    );
}

#[test]
fn two_proxies_with_different_files_disagree() {
    let line = verdict("proxies_disagree", &proxies_disagree());
    assert_eq!(
        line,
        format!(
            "{LABEL}: two proxies disagree (10.0.0.2 offers grubx64.efi, 10.0.0.3 offers ipxe.efi); \
             PXE-E3B file not found: 10.0.0.3 has no ipxe.efi (TFTP error 1 \"File not found\"); \
             last step that succeeded: DHCP ACK from 10.0.0.1 (10.0.0.57)"
        )
    );
}

#[test]
fn mac_follows_one_machine_and_big_endian_nanosecond_files_read() {
    let c = two_machines();
    let both = verdicts("two_machines", &c, &[]);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both[0].starts_with("52:54:00:12:34:56 "), "{both:?}");
    assert!(
        both[1].starts_with("52:54:00:ab:cd:ef (x64 UEFI): PXE-E51"),
        "{both:?}"
    );

    let one = verdicts("two_machines", &c, &["--mac", "52:54:00:ab:cd:ef"]);
    assert_eq!(one.len(), 1, "{one:?}");
    assert!(one[0].starts_with("52:54:00:ab:cd:ef "), "{one:?}");
    let none = verdicts("two_machines", &c, &["--mac", "52:54:00:00:00:01"]);
    assert_eq!(
        none,
        ["no client matching 52:54:00:00:00:01 seen (28 frames)"]
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("be.pcap");
    std::fs::write(&path, c.to_pcap(true)).unwrap();
    let out = doctor(&["--pcap", path.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        both
    );
}

#[test]
fn damaged_and_foreign_files_are_reported_not_panicked_on() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.pcap");
    let bytes = no_offer().to_pcap(false);
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    let out = doctor(&["--pcap", truncated.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("PXE-E51 no DHCP offer (2 DISCOVERs"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("record 2 runs past the end of the file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let garbage = dir.path().join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture at all").unwrap();
    let out = doctor(&["--pcap", garbage.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap file"));
}

#[test]
fn committed_fixtures_give_the_same_verdicts() {
    let scenarios: [(&str, Scenario); 9] = [
        ("no_offer", no_offer),
        ("no_boot_file", no_boot_file),
        ("no_4011_answer", no_4011_answer),
        ("dhcp_server_option_60", dhcp_server_option_60),
        ("tftp_open_timeout", tftp_open_timeout),
        ("file_not_found", file_not_found),
        ("stopped_after", stopped_after),
        ("proxies_disagree", proxies_disagree),
        ("two_machines", two_machines),
    ];
    for (name, scenario) in scenarios {
        let fresh = verdicts(name, &scenario(), &[]);
        let path = fixture_dir().join(format!("{name}.pcap"));
        let out = doctor(&["--pcap", path.to_str().unwrap()]);
        let committed: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            committed, fresh,
            "{name}: regenerate with DOCTOR_WRITE_FIXTURES=1 cargo test --release --test doctor"
        );
    }
}

/// A live capture on the loopback of a namespace made for this test: a
/// DISCOVER that nothing answers is PXE-E51.
#[test]
fn live_capture_in_a_namespace_sees_an_unanswered_discover() {
    let ns = netns::Netns::create("doc");
    let child = ns
        .command(env!("CARGO_BIN_EXE_rackboot"))
        .args(["doctor", "--interface", "lo", "--duration", "3"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rackboot doctor");
    let sender = ns.spawn("discover".into(), || {
        let socket = UdpSocket::bind("127.0.0.1:68").expect("bind 127.0.0.1:68");
        let discover = client_message(OTHER_MAC, MessageType::Discover);
        // The capture opens within a second; send a few to be sure one is seen.
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(500));
            socket
                .send_to(&discover, "127.0.0.1:67")
                .expect("send DISCOVER");
        }
    });
    sender.join().unwrap();
    let out = child.wait_with_output().expect("wait for doctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "doctor failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("52:54:00:ab:cd:ef (x64 UEFI): PXE-E51 no DHCP offer"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Without CAP_NET_RAW (dropped from the bounding set, so not even root
/// has it) a live capture says what it needs, in one line, and fails.
#[test]
fn a_live_capture_without_cap_net_raw_says_so() {
    let ns = netns::Netns::create("docp");
    let out = ns
        .command("setpriv")
        .args(["--bounding-set=-net_raw", "--inh-caps=-net_raw", "--"])
        .arg(env!("CARGO_BIN_EXE_rackboot"))
        .args(["doctor", "--interface", "lo", "--duration", "1"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv rackboot doctor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("rackboot doctor needs CAP_NET_RAW (run as root, or setcap cap_net_raw=+ep"),
        "{stderr}"
    );
}

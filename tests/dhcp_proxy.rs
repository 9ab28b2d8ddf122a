//! The proxy policy against hand-built firmware requests
//! (tests/fixtures/dhcp, see make_fixtures.py there), with dhcproto as an
//! independent decoder of every reply.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder};
use rackboot::dhcp::{
    Arch, BootEntry, ConfigError, Destination, MAX_REPLY_LEN, MacOverride, Policy, Prompt,
    ProxyConfig, Reply, ReplyKind, Request, ServerPort, Silence,
};
use rackboot::wire::dhcp::Error as WireError;

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 1);
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68);
const OVMF_GUID: [u8; 16] = [
    0x8a, 0x4f, 0x2c, 0x1e, 0x6b, 0x3d, 0x4e, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18,
];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/dhcp/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// BIOS menu entry, x64 UEFI entry: the usual two-architecture setup.
fn base_config() -> ProxyConfig {
    ProxyConfig {
        boot: vec![
            BootEntry {
                menu: Some("Install Linux".into()),
                ..BootEntry::new(Arch::Bios, "undionly.kpxe")
            },
            BootEntry::new(Arch::X64Uefi, "ipxe.efi"),
        ],
        ..ProxyConfig::default()
    }
}

fn policy(config: ProxyConfig) -> Policy {
    Policy::new(config).expect("valid config")
}

fn on_67(bytes: &[u8]) -> Request<'_> {
    Request {
        bytes,
        port: ServerPort::Dhcp,
        source: CLIENT,
        local_addr: LOCAL,
    }
}

fn on_4011(bytes: &[u8], source: SocketAddrV4) -> Request<'_> {
    Request {
        bytes,
        port: ServerPort::Pxe,
        source,
        local_addr: LOCAL,
    }
}

fn answer(policy: &Policy, request: &Request<'_>) -> Result<(Reply, Vec<u8>), Silence> {
    let mut out = [0u8; MAX_REPLY_LEN];
    let reply = policy.answer(request, &mut out)?;
    Ok((reply, out[..reply.len].to_vec()))
}

fn decode(bytes: &[u8]) -> Message {
    Message::decode(&mut Decoder::new(bytes)).expect("dhcproto decodes the reply")
}

/// An independent walk over the options area (after the cookie at 236).
fn raw_options(packet: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut found = Vec::new();
    let mut i = 240;
    while i < packet.len() {
        match packet[i] {
            0 => i += 1,
            255 => break,
            code => {
                let len = packet[i + 1] as usize;
                found.push((code, packet[i + 2..i + 2 + len].to_vec()));
                i += 2 + len;
            }
        }
    }
    found
}

/// Rebuilds a request with option `code` replaced (or removed with `None`,
/// or appended when absent).
fn with_option(packet: &[u8], code: u8, data: Option<&[u8]>) -> Vec<u8> {
    let mut out = packet[..240].to_vec();
    let mut done = false;
    for (c, d) in raw_options(packet) {
        if c == code {
            if let (Some(new), false) = (data, done) {
                out.extend_from_slice(&[c, new.len() as u8]);
                out.extend_from_slice(new);
            }
            done = true;
        } else {
            out.extend_from_slice(&[c, d.len() as u8]);
            out.extend_from_slice(&d);
        }
    }
    if let (Some(new), false) = (data, done) {
        out.extend_from_slice(&[code, new.len() as u8]);
        out.extend_from_slice(new);
    }
    out.push(255);
    out
}

fn option(message: &Message, code: OptionCode) -> Option<&DhcpOption> {
    message.opts().get(code)
}

fn vendor_options(message: &Message) -> Option<Vec<u8>> {
    match option(message, OptionCode::VendorExtensions)? {
        DhcpOption::VendorExtensions(bytes) => Some(bytes.clone()),
        other => panic!("option 43 decoded as {other:?}"),
    }
}

/// A `file` or `sname` field as dhcproto returns it: up to and including
/// its NUL, which PXE ROMs rely on.
fn text(field: Option<&[u8]>) -> String {
    let Some(bytes) = field else {
        return String::new();
    };
    let (nul, text) = bytes
        .split_last()
        .expect("dhcproto returns non-empty fields");
    assert_eq!(*nul, 0, "field is NUL-terminated");
    String::from_utf8_lossy(text).into_owned()
}

/// What every proxy reply must satisfy, checked with dhcproto.
fn assert_proxy_reply(request: &[u8], reply: &Reply, bytes: &[u8]) -> Message {
    let asked = decode(request);
    let message = decode(bytes);
    assert!(bytes.len() >= 300, "padded to the BOOTP minimum");
    assert_eq!(reply.len, bytes.len());
    assert_eq!(message.opcode(), Opcode::BootReply);
    assert_eq!(message.xid(), asked.xid());
    assert_eq!(message.chaddr(), asked.chaddr());
    assert_eq!(message.hlen(), asked.hlen());
    assert_eq!(message.giaddr(), asked.giaddr());
    assert_eq!(
        message.yiaddr(),
        Ipv4Addr::UNSPECIFIED,
        "a proxy never offers an address"
    );
    assert_eq!(message.secs(), 0);
    assert_eq!(message.htype(), asked.htype());
    let expected_type = match reply.kind {
        ReplyKind::Offer => {
            assert_eq!(message.ciaddr(), Ipv4Addr::UNSPECIFIED);
            assert!(
                message.flags().broadcast(),
                "broadcast flag forced on offers"
            );
            assert_eq!(reply.source_port, ServerPort::Dhcp);
            MessageType::Offer
        }
        ReplyKind::Ack => {
            assert_eq!(message.ciaddr(), asked.ciaddr(), "ciaddr echoed");
            assert_eq!(message.flags(), asked.flags());
            assert_eq!(reply.source_port, ServerPort::Pxe);
            MessageType::Ack
        }
    };
    assert_eq!(message.opts().msg_type(), Some(expected_type));
    assert_eq!(
        option(&message, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(LOCAL))
    );
    for lease_option in [
        OptionCode::AddressLeaseTime,
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::RequestedIpAddress,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ] {
        assert!(
            option(&message, lease_option).is_none(),
            "{lease_option:?} in a proxy reply"
        );
    }
    // Option 97 is echoed exactly when the client sent a type-0 GUID.
    let asked_id = raw_options(request)
        .into_iter()
        .find(|(c, _)| *c == 97)
        .map(|(_, d)| d);
    let echoed = raw_options(bytes)
        .into_iter()
        .find(|(c, _)| *c == 97)
        .map(|(_, d)| d);
    match asked_id {
        Some(id) if id.len() == 17 && id[0] == 0 => assert_eq!(echoed, Some(id)),
        _ => assert_eq!(echoed, None),
    }
    // dnsmasq's order: 53, 54, 60, 97, then 43.
    let codes: Vec<u8> = raw_options(bytes).iter().map(|(c, _)| *c).collect();
    let expected: Vec<u8> = [53, 54, 60, 97, 43, 67]
        .into_iter()
        .filter(|c| codes.contains(c))
        .collect();
    assert_eq!(codes, expected);
    message
}

/// Sub-options of an option 43 payload, and whether it ended with END.
fn sub_options(payload: &[u8]) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut found = Vec::new();
    let mut i = 0;
    while i < payload.len() {
        match payload[i] {
            255 => return (found, i + 1 == payload.len()),
            code => {
                let len = payload[i + 1] as usize;
                found.push((code, payload[i + 2..i + 2 + len].to_vec()));
                i += 2 + len;
            }
        }
    }
    (found, false)
}

#[test]
fn ovmf_discover_is_sent_to_port_4011() {
    let policy = policy(base_config());
    let request = fixture("ovmf_x64_discover.bin");
    let (reply, bytes) = answer(&policy, &on_67(&request)).unwrap();
    let message = assert_proxy_reply(&request, &reply, &bytes);
    assert_eq!(reply.destination, Destination::Broadcast68);
    assert_eq!(
        reply.destination.socket_addr(),
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 68)
    );
    assert_eq!(reply.kind, ReplyKind::Offer);
    assert_eq!(reply.arch, Arch::X64Uefi);
    assert_eq!(reply.delay, None);
    assert_eq!(message.siaddr(), LOCAL, "siaddr names the boot server");
    assert_eq!(message.fname(), None, "no file: the client asks on 4011");
    assert_eq!(vendor_options(&message), None, "no option 43 for UEFI");
    assert_eq!(
        option(&message, OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
    );
    let mut id = vec![0];
    id.extend_from_slice(&OVMF_GUID);
    assert_eq!(
        option(&message, OptionCode::ClientMachineIdentifier),
        Some(&DhcpOption::ClientMachineIdentifier(id))
    );
}

#[test]
fn ovmf_request_on_4011_gets_the_uefi_file() {
    let policy = policy(base_config());
    let request = fixture("ovmf_x64_request_4011.bin");
    let source = SocketAddrV4::new(Ipv4Addr::new(192, 168, 122, 50), 68);
    let (reply, bytes) = answer(&policy, &on_4011(&request, source)).unwrap();
    let message = assert_proxy_reply(&request, &reply, &bytes);
    assert_eq!(reply.kind, ReplyKind::Ack);
    assert_eq!(reply.source_port.number(), 4011);
    assert_eq!(reply.destination, Destination::Unicast(source));
    assert_eq!(message.ciaddr(), Ipv4Addr::new(192, 168, 122, 50));
    assert_eq!(message.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(message.siaddr(), LOCAL);
    assert_eq!(text(message.fname()), "ipxe.efi");
    assert_eq!(text(message.sname()), "192.168.122.1");
    assert_eq!(
        vendor_options(&message),
        None,
        "no boot item asked, none echoed"
    );
}

#[test]
fn ack_goes_to_ciaddr_at_the_source_port() {
    let policy = policy(base_config());
    let request = fixture("ovmf_x64_request_4011.bin");
    // Sent through some NAT or from an odd port: ciaddr and the port decide.
    let source = SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 1068);
    let (reply, _) = answer(&policy, &on_4011(&request, source)).unwrap();
    assert_eq!(
        reply.destination,
        Destination::Unicast(SocketAddrV4::new(Ipv4Addr::new(192, 168, 122, 50), 1068))
    );
    // Without ciaddr, the source address.
    let no_ciaddr = {
        let mut bytes = request.clone();
        bytes[12..16].fill(0);
        bytes
    };
    let (reply, bytes) = answer(&policy, &on_4011(&no_ciaddr, source)).unwrap();
    assert_eq!(reply.destination, Destination::Unicast(source));
    assert_eq!(decode(&bytes).yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(decode(&bytes).ciaddr(), Ipv4Addr::UNSPECIFIED);
}

#[test]
fn intel_bios_discover_gets_the_menu() {
    let policy = policy(base_config());
    let request = fixture("intel_bios_discover.bin");
    let (reply, bytes) = answer(&policy, &on_67(&request)).unwrap();
    let message = assert_proxy_reply(&request, &reply, &bytes);
    assert_eq!(reply.arch, Arch::Bios);
    assert_eq!(message.siaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(message.fname(), None);
    assert!(
        option(&message, OptionCode::ClientMachineIdentifier).is_none(),
        "Intel sent no 97"
    );
    let (subs, ended) = sub_options(&vendor_options(&message).unwrap());
    assert!(ended, "option 43 ends with END");
    let mut menu = vec![0x80, 0x00, 13];
    menu.extend_from_slice(b"Install Linux");
    menu.extend_from_slice(&[0, 0, 20]);
    menu.extend_from_slice(b"Boot from local disk");
    assert_eq!(
        subs,
        vec![
            (6, vec![3]),
            (8, vec![0x80, 0x00, 1, 192, 168, 122, 1]),
            (9, menu),
            (10, vec![0, b'P', b'X', b'E']),
        ]
    );
}

#[test]
fn bios_menu_lists_every_entry_with_the_configured_prompt() {
    let mut config = base_config();
    config.boot.push(BootEntry {
        menu: Some("Rescue".into()),
        ..BootEntry::new(Arch::Bios, "rescue.0")
    });
    config.proxy.prompt = Some(Prompt {
        timeout: 10,
        text: "Press F8".into(),
    });
    config.proxy.local_boot_menu = None;
    let policy = policy(config);
    let request = fixture("intel_bios_discover.bin");
    let (_, bytes) = answer(&policy, &on_67(&request)).unwrap();
    let (subs, _) = sub_options(&vendor_options(&decode(&bytes)).unwrap());
    assert_eq!(
        subs[1],
        (
            8,
            vec![
                0x80, 0x00, 1, 192, 168, 122, 1, 0x80, 0x01, 1, 192, 168, 122, 1
            ]
        )
    );
    let mut menu = vec![0x80, 0x00, 13];
    menu.extend_from_slice(b"Install Linux");
    menu.extend_from_slice(&[0x80, 0x01, 6]);
    menu.extend_from_slice(b"Rescue");
    assert_eq!(subs[2], (9, menu));
    let mut prompt = vec![10];
    prompt.extend_from_slice(b"Press F8");
    assert_eq!(subs[3], (10, prompt));
}

#[test]
fn bios_request_for_a_menu_item_gets_its_file_and_the_item_echoed() {
    let mut config = base_config();
    config.boot.push(BootEntry {
        server: Some(Ipv4Addr::new(10, 0, 0, 9)),
        ..BootEntry::new(Arch::Bios, "rescue.0")
    });
    let policy = policy(config);
    let request = fixture("intel_bios_request_4011_item.bin");
    let source = SocketAddrV4::new(Ipv4Addr::new(192, 168, 122, 60), 68);
    let (reply, bytes) = answer(&policy, &on_4011(&request, source)).unwrap();
    let message = assert_proxy_reply(&request, &reply, &bytes);
    assert_eq!(text(message.fname()), "undionly.kpxe");
    assert_eq!(message.siaddr(), LOCAL);
    assert_eq!(text(message.sname()), "192.168.122.1");
    assert_eq!(
        vendor_options(&message),
        Some(vec![71, 4, 0x80, 0x00, 0, 0, 255])
    );

    // Item 0x8001 is the second BIOS entry, served from its own server.
    let second = with_option(&request, 43, Some(&[71, 4, 0x80, 0x01, 0, 0, 255]));
    let (_, bytes) = answer(&policy, &on_4011(&second, source)).unwrap();
    let message = decode(&bytes);
    assert_eq!(text(message.fname()), "rescue.0");
    assert_eq!(message.siaddr(), Ipv4Addr::new(10, 0, 0, 9));
    assert_eq!(text(message.sname()), "10.0.0.9");
    assert_eq!(
        vendor_options(&message),
        Some(vec![71, 4, 0x80, 0x01, 0, 0, 255])
    );
}

#[test]
fn local_boot_and_unknown_items_get_no_reply() {
    let policy = policy(base_config());
    let source = SocketAddrV4::new(Ipv4Addr::new(192, 168, 122, 60), 68);
    let local = fixture("intel_bios_request_4011_local.bin");
    assert_eq!(
        answer(&policy, &on_4011(&local, source)).unwrap_err(),
        Silence::LocalBootItem
    );

    let request = fixture("intel_bios_request_4011_item.bin");
    let unknown = with_option(&request, 43, Some(&[71, 4, 0x80, 0x05, 0, 0, 255]));
    assert_eq!(
        answer(&policy, &on_4011(&unknown, source)).unwrap_err(),
        Silence::UnknownBootItem {
            item_type: 0x8005,
            layer: 0
        }
    );
    let other_layer = with_option(&request, 43, Some(&[71, 4, 0x80, 0x00, 0, 1, 255]));
    assert_eq!(
        answer(&policy, &on_4011(&other_layer, source)).unwrap_err(),
        Silence::UnknownBootItem {
            item_type: 0x8000,
            layer: 1
        }
    );
    let bis = with_option(&request, 43, Some(&[71, 4, 0x80, 0x00, 0x80, 0, 255]));
    assert!(matches!(
        answer(&policy, &on_4011(&bis, source)),
        Err(Silence::UnknownBootItem { .. })
    ));
    let short = with_option(&request, 43, Some(&[71, 2, 0x80, 0x00, 255]));
    assert!(matches!(
        answer(&policy, &on_4011(&short, source)),
        Err(Silence::Malformed(_))
    ));
}

#[test]
fn ipxe_gets_the_script_in_the_offer() {
    let mut config = base_config();
    config.proxy.ipxe_script = Some("http://192.168.122.1/boot.ipxe".into());
    let policy = policy(config);
    for name in ["seabios_ipxe_discover.bin", "ipxe_efi_x64_discover.bin"] {
        let request = fixture(name);
        let (reply, bytes) = answer(&policy, &on_67(&request)).unwrap();
        let message = assert_proxy_reply(&request, &reply, &bytes);
        assert_eq!(
            text(message.fname()),
            "http://192.168.122.1/boot.ipxe",
            "{name}"
        );
        assert_eq!(message.siaddr(), LOCAL, "{name}");
        assert_eq!(vendor_options(&message), None, "{name}: no menu for iPXE");
    }
}

#[test]
fn ipxe_without_a_script_gets_its_file_directly() {
    let policy = policy(base_config());
    let request = fixture("seabios_ipxe_discover.bin");
    let (_, bytes) = answer(&policy, &on_67(&request)).unwrap();
    let message = decode(&bytes);
    assert_eq!(text(message.fname()), "undionly.kpxe");
    assert_eq!(vendor_options(&message), None);

    // Option 175 alone, or an RFC 3004 user class, is enough.
    let only_175 = with_option(&request, 77, None);
    assert_eq!(
        text(decode(&answer(&policy, &on_67(&only_175)).unwrap().1).fname()),
        "undionly.kpxe"
    );
    let rfc3004 = with_option(&with_option(&request, 175, None), 77, Some(b"\x04iPXE"));
    assert_eq!(
        text(decode(&answer(&policy, &on_67(&rfc3004)).unwrap().1).fname()),
        "undionly.kpxe"
    );
    // Neither: the ordinary BIOS menu.
    let plain = with_option(&with_option(&request, 175, None), 77, None);
    assert!(vendor_options(&decode(&answer(&policy, &on_67(&plain)).unwrap().1)).is_some());
}

#[test]
fn long_file_names_go_in_option_67() {
    let mut config = base_config();
    let url = format!("http://boot.example.com/{}/boot.ipxe", "x".repeat(150));
    config.proxy.ipxe_script = Some(url.clone());
    let policy = policy(config);
    let request = fixture("seabios_ipxe_discover.bin");
    let (reply, bytes) = answer(&policy, &on_67(&request)).unwrap();
    let message = assert_proxy_reply(&request, &reply, &bytes);
    assert_eq!(message.fname(), None);
    assert_eq!(
        option(&message, OptionCode::BootfileName),
        Some(&DhcpOption::BootfileName(url.into_bytes()))
    );
}

#[test]
fn huawei_is_answered_only_when_configured_and_gets_its_class_back() {
    let request = fixture("huawei_uefi_discover.bin");
    assert_eq!(
        answer(&policy(base_config()), &on_67(&request)).unwrap_err(),
        Silence::NotPxe
    );

    let mut config = base_config();
    config.proxy.vendor_classes = vec!["PXEClient".into(), "HW-Client".into()];
    let (reply, bytes) = answer(&policy(config), &on_67(&request)).unwrap();
    let message = assert_proxy_reply(&request, &reply, &bytes);
    assert_eq!(
        option(&message, OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"HW-Client".to_vec()))
    );
}

#[test]
fn relayed_discover_goes_back_to_the_relay() {
    let policy = policy(base_config());
    let request = fixture("ovmf_x64_discover_relayed.bin");
    let (reply, bytes) = answer(&policy, &on_67(&request)).unwrap();
    let message = assert_proxy_reply(&request, &reply, &bytes);
    let relay = Ipv4Addr::new(10, 1, 2, 1);
    assert_eq!(reply.destination, Destination::Relay(relay));
    assert_eq!(
        reply.destination.socket_addr(),
        SocketAddrV4::new(relay, 67)
    );
    assert_eq!(message.giaddr(), relay);
}

#[test]
fn broadcast_flag_is_forced_even_when_the_client_left_it_off() {
    let policy = policy(base_config());
    let mut request = fixture("intel_bios_discover.bin");
    request[10..12].fill(0);
    let (_, bytes) = answer(&policy, &on_67(&request)).unwrap();
    assert!(decode(&bytes).flags().broadcast());
}

#[test]
fn direct_entries_put_the_file_in_the_offer() {
    let mut config = base_config();
    config.boot[1].direct = true;
    config.proxy.tftp_server = Some(Ipv4Addr::new(10, 0, 0, 5));
    let policy = policy(config);
    let request = fixture("ovmf_x64_discover.bin");
    let (reply, bytes) = answer(&policy, &on_67(&request)).unwrap();
    let message = assert_proxy_reply(&request, &reply, &bytes);
    assert_eq!(text(message.fname()), "ipxe.efi");
    assert_eq!(message.siaddr(), Ipv4Addr::new(10, 0, 0, 5));
    assert_eq!(vendor_options(&message), Some(vec![6, 1, 8, 255]));
}

#[test]
fn x64_is_both_seven_and_nine() {
    let policy = policy(base_config());
    let request = with_option(&fixture("ovmf_x64_request_4011.bin"), 93, Some(&[0, 9]));
    let source = SocketAddrV4::new(Ipv4Addr::new(192, 168, 122, 50), 68);
    let (reply, bytes) = answer(&policy, &on_4011(&request, source)).unwrap();
    assert_eq!(reply.arch, Arch::X64Uefi);
    assert_eq!(text(decode(&bytes).fname()), "ipxe.efi");
}

#[test]
fn other_architectures_need_their_own_entry() {
    let request = fixture("aavmf_arm64_discover.bin");
    assert_eq!(
        answer(&policy(base_config()), &on_67(&request)).unwrap_err(),
        Silence::NoBootEntry(Arch::Arm64Uefi)
    );

    let mut config = base_config();
    config.boot.push(BootEntry::new(
        "arm64-uefi".parse().unwrap(),
        "grubaa64.efi",
    ));
    let policy = policy(config);
    let (reply, bytes) = answer(&policy, &on_67(&request)).unwrap();
    assert_proxy_reply(&request, &reply, &bytes);
    assert_eq!(reply.arch, Arch::Arm64Uefi);

    let ia32 = with_option(&request, 93, Some(&[0, 6]));
    assert_eq!(
        answer(&policy, &on_67(&ia32)).unwrap_err(),
        Silence::NoBootEntry(Arch::Ia32Uefi)
    );
    let itanium = with_option(&request, 93, Some(&[0, 2]));
    assert_eq!(
        answer(&policy, &on_67(&itanium)).unwrap_err(),
        Silence::UnknownArch(2)
    );
    assert_eq!(
        Silence::UnknownArch(2).to_string(),
        "unsupported client architecture 2"
    );
}

#[test]
fn http_boot_is_answered_only_with_a_url() {
    let request = fixture("ovmf_x64_http_discover.bin");
    assert_eq!(
        answer(&policy(base_config()), &on_67(&request)).unwrap_err(),
        Silence::NoBootEntry(Arch::X64UefiHttp)
    );

    let mut config = base_config();
    config.boot[1].http_url = Some("http://192.168.122.1/ipxe.efi".into());
    let (reply, bytes) = answer(&policy(config), &on_67(&request)).unwrap();
    let message = assert_proxy_reply(&request, &reply, &bytes);
    assert_eq!(reply.arch, Arch::X64UefiHttp);
    assert_eq!(text(message.fname()), "http://192.168.122.1/ipxe.efi");
    assert_eq!(
        option(&message, OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
    );
    assert_eq!(vendor_options(&message), None);

    // An entry for the HTTP architecture itself works as well.
    let mut config = base_config();
    config.boot.push(BootEntry {
        http_url: Some("http://x/y.efi".into()),
        ..BootEntry::new(Arch::X64UefiHttp, "")
    });
    let (_, bytes) = answer(&policy(config), &on_67(&request)).unwrap();
    assert_eq!(text(decode(&bytes).fname()), "http://x/y.efi");
}

#[test]
fn an_http_url_given_as_a_path_names_this_server() {
    let request = fixture("ovmf_x64_http_discover.bin");
    let mut config = base_config();
    config.boot[1].http_url = Some("/boot/ipxe.efi".into());
    let policy = Policy::new(config).unwrap().with_http_port(8080);
    let (reply, bytes) = answer(&policy, &on_67(&request)).unwrap();
    let message = assert_proxy_reply(&request, &reply, &bytes);
    // The address the request came to, as an IP literal, and the port.
    assert_eq!(
        text(message.fname()),
        format!("http://{}:8080/boot/ipxe.efi", on_67(&request).local_addr)
    );
    // PXE clients are not touched by it.
    let pxe = fixture("ovmf_x64_discover.bin");
    let (_, bytes) = answer(&policy, &on_67(&pxe)).unwrap();
    assert!(!text(decode(&bytes).fname()).starts_with("http"));
}

#[test]
fn mac_overrides_pick_the_most_specific_file() {
    let mut config = base_config();
    config.mac = vec![
        MacOverride::new("52:54:00".parse().unwrap(), "lab.efi"),
        MacOverride::new("52:54:00:12:34:56".parse().unwrap(), "special.efi"),
    ];
    let policy = policy(config);
    let source = SocketAddrV4::new(Ipv4Addr::new(192, 168, 122, 50), 68);
    let request = fixture("ovmf_x64_request_4011.bin");
    let (_, bytes) = answer(&policy, &on_4011(&request, source)).unwrap();
    assert_eq!(text(decode(&bytes).fname()), "special.efi");

    let mut other = request.clone();
    other[28 + 5] = 0x57; // chaddr 52:54:00:12:34:57, only the prefix matches
    let (_, bytes) = answer(&policy, &on_4011(&other, source)).unwrap();
    assert_eq!(text(decode(&bytes).fname()), "lab.efi");

    // UEFI keeps its flow (redirect to 4011); BIOS gets the file at once.
    let (_, bytes) = answer(&policy, &on_67(&fixture("ovmf_x64_discover.bin"))).unwrap();
    assert_eq!(decode(&bytes).fname(), None);
    let mut config = base_config();
    config.mac = vec![MacOverride::new(
        "00:1b:21:11:22:33".parse().unwrap(),
        "pxelinux.0",
    )];
    let (_, bytes) = answer(
        &Policy::new(config).unwrap(),
        &on_67(&fixture("intel_bios_discover.bin")),
    )
    .unwrap();
    let message = decode(&bytes);
    assert_eq!(text(message.fname()), "pxelinux.0");
    assert_eq!(message.siaddr(), LOCAL);
    assert_eq!(vendor_options(&message), Some(vec![6, 1, 8, 255]));
}

#[test]
fn ignored_macs_get_nothing() {
    let mut config = base_config();
    config.proxy.ignore_macs = vec![
        "00:1b:21".parse().unwrap(),
        "52:54:00:12:34:56".parse().unwrap(),
    ];
    let policy = policy(config);
    assert_eq!(
        answer(&policy, &on_67(&fixture("intel_bios_discover.bin"))).unwrap_err(),
        Silence::IgnoredMac
    );
    assert_eq!(
        answer(&policy, &on_67(&fixture("ovmf_x64_discover.bin"))).unwrap_err(),
        Silence::IgnoredMac
    );
    assert!(answer(&policy, &on_67(&fixture("seabios_ipxe_discover.bin"))).is_ok());
}

#[test]
fn reply_delay_applies_to_offers() {
    let mut config = base_config();
    config.proxy.reply_delay_ms = 250;
    let policy = policy(config);
    let (reply, _) = answer(&policy, &on_67(&fixture("ovmf_x64_discover.bin"))).unwrap();
    assert_eq!(reply.delay, Some(Duration::from_millis(250)));
    let source = SocketAddrV4::new(Ipv4Addr::new(192, 168, 122, 50), 68);
    let (reply, _) = answer(
        &policy,
        &on_4011(&fixture("ovmf_x64_request_4011.bin"), source),
    )
    .unwrap();
    assert_eq!(reply.delay, None);
}

#[test]
fn option_54_is_the_receiving_interface() {
    let policy = policy(base_config());
    let request = fixture("ovmf_x64_discover.bin");
    let other_interface = Ipv4Addr::new(10, 20, 30, 40);
    let mut out = [0; MAX_REPLY_LEN];
    let reply = policy
        .answer(
            &Request {
                local_addr: other_interface,
                ..on_67(&request)
            },
            &mut out,
        )
        .unwrap();
    let message = decode(&out[..reply.len]);
    assert_eq!(
        option(&message, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(other_interface))
    );
    assert_eq!(message.siaddr(), other_interface);
}

#[test]
fn silent_for_what_a_proxy_does_not_answer() {
    let policy = policy(base_config());
    let cases = [
        ("windows_discover.bin", ServerPort::Dhcp, Silence::NotPxe),
        ("ovmf_x64_inform.bin", ServerPort::Dhcp, Silence::Inform),
        ("ovmf_x64_inform.bin", ServerPort::Pxe, Silence::Inform),
        (
            "ovmf_x64_request_67.bin",
            ServerPort::Dhcp,
            Silence::RequestOn67,
        ),
        (
            "ovmf_x64_discover.bin",
            ServerPort::Pxe,
            Silence::UnexpectedMessage {
                message_type: 1,
                port: 4011,
            },
        ),
    ];
    for (name, port, silence) in cases {
        let bytes = fixture(name);
        let request = Request {
            port,
            ..on_67(&bytes)
        };
        assert_eq!(
            answer(&policy, &request).unwrap_err(),
            silence,
            "{name} on {port:?}"
        );
    }
    let request = fixture("ovmf_x64_discover.bin");
    let mut reply_op = request.clone();
    reply_op[0] = 2;
    assert_eq!(
        answer(&policy, &on_67(&reply_op)).unwrap_err(),
        Silence::NotRequest
    );
    let bootp = with_option(&request, 53, None);
    assert_eq!(
        answer(&policy, &on_67(&bootp)).unwrap_err(),
        Silence::NoMessageType
    );
    let release = with_option(&request, 53, Some(&[7]));
    assert!(matches!(
        answer(&policy, &on_67(&release)),
        Err(Silence::UnexpectedMessage {
            message_type: 7,
            ..
        })
    ));
}

#[test]
fn malformed_headers_are_silent() {
    let policy = policy(base_config());
    let request = fixture("ovmf_x64_discover.bin");
    for len in 0..240 {
        assert_eq!(
            answer(&policy, &on_67(&request[..len])).unwrap_err(),
            Silence::Malformed(WireError::Truncated),
            "truncated to {len}"
        );
    }
    let mut bad_cookie = request.clone();
    bad_cookie[239] = 0x64;
    assert_eq!(
        answer(&policy, &on_67(&bad_cookie)).unwrap_err(),
        Silence::Malformed(WireError::BadCookie)
    );
    let mut hlen_17 = request.clone();
    hlen_17[2] = 17;
    assert_eq!(
        answer(&policy, &on_67(&hlen_17)).unwrap_err(),
        Silence::Malformed(WireError::BadHlen(17))
    );
}

#[test]
fn missing_or_empty_arch_is_silent() {
    let policy = policy(base_config());
    let request = fixture("ovmf_x64_discover.bin");
    assert_eq!(
        answer(&policy, &on_67(&with_option(&request, 93, Some(&[])))).unwrap_err(),
        Silence::NoArch
    );
    assert_eq!(
        answer(&policy, &on_67(&with_option(&request, 93, Some(&[7])))).unwrap_err(),
        Silence::NoArch
    );
    assert_eq!(
        answer(&policy, &on_67(&with_option(&request, 93, None))).unwrap_err(),
        Silence::NoArch
    );
    // A list takes its first entry.
    let list = with_option(&request, 93, Some(&[0, 7, 0, 0]));
    assert_eq!(
        answer(&policy, &on_67(&list)).unwrap().0.arch,
        Arch::X64Uefi
    );
}

#[test]
fn padding_is_accepted() {
    let policy = policy(base_config());
    let request = fixture("ovmf_x64_discover.bin");
    // 1500 PAD bytes between the options and END: an otherwise valid
    // DISCOVER, answered.
    let options_end = 240
        + raw_options(&request)
            .iter()
            .map(|(_, d)| d.len() + 2)
            .sum::<usize>();
    let mut padded = request[..options_end].to_vec();
    padded.extend_from_slice(&[0; 1500]);
    padded.push(255);
    let (reply, bytes) = answer(&policy, &on_67(&padded)).unwrap();
    assert_proxy_reply(&request, &reply, &bytes);
    // Nothing but padding: no vendor class, not PXE.
    let mut only_padding = request[..240].to_vec();
    only_padding.extend_from_slice(&[0; 1500]);
    assert_eq!(
        answer(&policy, &on_67(&only_padding)).unwrap_err(),
        Silence::NotPxe
    );
}

#[test]
fn overrunning_options_are_handled_like_dnsmasq() {
    let policy = policy(base_config());
    let request = fixture("ovmf_x64_discover.bin");
    let options_end = 240
        + raw_options(&request)
            .iter()
            .map(|(_, d)| d.len() + 2)
            .sum::<usize>();

    // A trailing option that overruns the packet (and no END): what came
    // before is intact, so the client is answered.
    let mut overrun_tail = request[..options_end].to_vec();
    overrun_tail.extend_from_slice(&[12, 40, b'h', b'o', b's', b't']);
    assert!(answer(&policy, &on_67(&overrun_tail)).is_ok());
    // No END at all.
    assert!(answer(&policy, &on_67(&request[..options_end])).is_ok());

    // Option 60 cut short: the client is not recognised.
    let cut = options_end - 5;
    assert_eq!(
        answer(&policy, &on_67(&request[..cut])).unwrap_err(),
        Silence::NotPxe
    );
    // An overrun early on hides everything after it.
    let mut early = request[..240].to_vec();
    early.extend_from_slice(&[53, 1, 1, 57, 200, 5, 192]);
    early.extend_from_slice(&request[246..options_end]);
    assert_eq!(
        answer(&policy, &on_67(&early)).unwrap_err(),
        Silence::NotPxe
    );
}

#[test]
fn no_input_makes_it_panic() {
    // Every truncation of every fixture, and many corrupted copies.
    let mut config = base_config();
    config.proxy.ipxe_script = Some("boot.ipxe".into());
    config.proxy.vendor_classes.push("HW-Client".into());
    config.boot.push(BootEntry {
        http_url: Some("http://x/y".into()),
        ..BootEntry::new(Arch::Arm64Uefi, "a.efi")
    });
    let policy = policy(config);
    let names = [
        "ovmf_x64_discover.bin",
        "ovmf_x64_request_4011.bin",
        "ovmf_x64_discover_relayed.bin",
        "aavmf_arm64_discover.bin",
        "ovmf_x64_http_discover.bin",
        "seabios_ipxe_discover.bin",
        "ipxe_efi_x64_discover.bin",
        "intel_bios_discover.bin",
        "intel_bios_request_4011_item.bin",
        "intel_bios_request_4011_local.bin",
        "huawei_uefi_discover.bin",
        "windows_discover.bin",
        "ovmf_x64_inform.bin",
        "ovmf_x64_request_67.bin",
    ];
    let mut out = [0; MAX_REPLY_LEN];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for name in names {
        let bytes = fixture(name);
        for port in [ServerPort::Dhcp, ServerPort::Pxe] {
            for len in 0..=bytes.len() {
                let _ = policy.answer(
                    &Request {
                        port,
                        ..on_67(&bytes[..len])
                    },
                    &mut out,
                );
            }
            for _ in 0..2000 {
                let mut corrupt = bytes.clone();
                for _ in 0..1 + random() % 4 {
                    let at = 236 + (random() as usize) % (corrupt.len() - 236);
                    corrupt[at] = random() as u8;
                }
                if let Ok(reply) = policy.answer(
                    &Request {
                        port,
                        ..on_67(&corrupt)
                    },
                    &mut out,
                ) {
                    let message = decode(&out[..reply.len]);
                    if reply.kind == ReplyKind::Offer {
                        assert_eq!(message.yiaddr(), Ipv4Addr::UNSPECIFIED);
                    }
                }
            }
        }
    }
}

#[test]
fn small_buffers_are_an_error_not_a_panic() {
    let policy = policy(base_config());
    let mut small = [0; 299];
    let ovmf = fixture("ovmf_x64_discover.bin");
    assert_eq!(
        policy.answer(&on_67(&ovmf), &mut small).unwrap_err(),
        Silence::ReplyTooLarge(WireError::BufferTooSmall)
    );
    // The UEFI offer fits the BOOTP minimum; the BIOS menu does not.
    let mut minimum = [0; 300];
    assert_eq!(policy.answer(&on_67(&ovmf), &mut minimum).unwrap().len, 300);
    let intel = fixture("intel_bios_discover.bin");
    assert!(matches!(
        policy.answer(&on_67(&intel), &mut minimum),
        Err(Silence::ReplyTooLarge(_))
    ));
}

#[test]
fn invalid_configurations_are_refused() {
    let mut config = base_config();
    config.proxy.vendor_classes.clear();
    assert_eq!(Policy::new(config).unwrap_err(), ConfigError::NoVendorClass);

    let mut config = base_config();
    config.boot.push(BootEntry::new(Arch::Arm64Uefi, ""));
    assert_eq!(
        Policy::new(config).unwrap_err(),
        ConfigError::MissingFile {
            index: 2,
            arch: Arch::Arm64Uefi
        }
    );

    let mut config = base_config();
    config.boot.push(BootEntry::new(Arch::X64UefiHttp, ""));
    assert_eq!(
        Policy::new(config).unwrap_err(),
        ConfigError::MissingHttpUrl {
            index: 2,
            arch: Arch::X64UefiHttp
        }
    );

    let mut config = base_config();
    for i in 0..12 {
        config.boot.push(BootEntry {
            menu: Some(format!("Entry number {i}")),
            ..BootEntry::new(Arch::Bios, "x.0")
        });
    }
    assert_eq!(Policy::new(config).unwrap_err(), ConfigError::MenuTooLarge);

    let mut config = base_config();
    config.boot[0].file = "f".repeat(256);
    assert!(matches!(
        Policy::new(config).unwrap_err(),
        ConfigError::TooLong { len: 256, .. }
    ));
}

#[test]
fn config_from_toml_drives_the_policy() {
    let config: ProxyConfig = toml::from_str(
        r#"
        [proxy]
        tftp_server = "10.0.0.5"
        [[boot]]
        arch = "x86PC"
        file = "undionly.kpxe"
        [[boot]]
        arch = "x64-uefi"
        file = "snponly.efi"
        "#,
    )
    .unwrap();
    let policy = policy(config);
    let source = SocketAddrV4::new(Ipv4Addr::new(192, 168, 122, 50), 68);
    let (_, bytes) = answer(
        &policy,
        &on_4011(&fixture("ovmf_x64_request_4011.bin"), source),
    )
    .unwrap();
    let message = decode(&bytes);
    assert_eq!(text(message.fname()), "snponly.efi");
    assert_eq!(message.siaddr(), Ipv4Addr::new(10, 0, 0, 5));
    assert_eq!(text(message.sname()), "10.0.0.5");
}

/// The port-4011 ACK, field by field, for BIOS and UEFI requests with and
/// without a boot item: ciaddr echoed, yiaddr 0 (a boot server never hands
/// out an address), siaddr and sname the TFTP server, the file, option 43
/// echoing exactly the item asked for.
#[test]
fn ack_fields_for_bios_and_uefi_with_and_without_a_boot_item() {
    let policy = policy(base_config());
    let item = [71, 4, 0x80, 0x00, 0, 0, 255];
    let cases = [
        ("intel_bios_request_4011_item.bin", None, "undionly.kpxe"),
        (
            "intel_bios_request_4011_item.bin",
            Some(&item[..]),
            "undionly.kpxe",
        ),
        ("ovmf_x64_request_4011.bin", None, "ipxe.efi"),
        ("ovmf_x64_request_4011.bin", Some(&item[..]), "ipxe.efi"),
    ];
    for (name, boot_item, file) in cases {
        let mut request = with_option(&fixture(name), 43, boot_item);
        let client = Ipv4Addr::new(192, 168, 122, 77);
        request[12..16].copy_from_slice(&client.octets());
        let source = SocketAddrV4::new(client, 68);
        let (reply, bytes) = answer(&policy, &on_4011(&request, source))
            .unwrap_or_else(|s| panic!("{name} {boot_item:?}: {s}"));
        let message = assert_proxy_reply(&request, &reply, &bytes);
        assert_eq!(reply.kind, ReplyKind::Ack, "{name}");
        assert_eq!(message.ciaddr(), client, "{name}: ciaddr echoed");
        assert_eq!(message.yiaddr(), Ipv4Addr::UNSPECIFIED, "{name}: yiaddr 0");
        assert_eq!(message.siaddr(), LOCAL, "{name}");
        assert_eq!(text(message.sname()), "192.168.122.1", "{name}");
        assert_eq!(text(message.fname()), file, "{name}");
        assert_eq!(reply.destination, Destination::Unicast(source), "{name}");
        assert_eq!(
            vendor_options(&message),
            boot_item.map(<[u8]>::to_vec),
            "{name}: option 43 echoes the item asked for, and only then"
        );
    }
}

/// The Intel BIOS DISCOVER as a Raspberry Pi 4's boot ROM sends it: arch 0,
/// `PXEClient`, from a Raspberry Pi Trading MAC.
fn raspberry_pi_discover() -> Vec<u8> {
    let mut request = fixture("intel_bios_discover.bin");
    request[28..34].copy_from_slice(&[0xdc, 0xa6, 0x32, 0x12, 0x34, 0x56]);
    request
}

#[test]
fn raspberry_pi_gets_the_option_43_its_firmware_looks_for() {
    let policy = policy(base_config());
    let request = raspberry_pi_discover();
    let (reply, bytes) = answer(&policy, &on_67(&request)).unwrap();
    let message = assert_proxy_reply(&request, &reply, &bytes);
    assert_eq!(reply.arch, Arch::Bios);
    assert_eq!(
        message.siaddr(),
        Ipv4Addr::new(192, 168, 122, 1),
        "the Pi fetches its files from siaddr"
    );
    assert_eq!(message.fname(), None, "the Pi asks for its own files");
    let (subs, ended) = sub_options(&vendor_options(&message).unwrap());
    assert!(ended, "option 43 ends with END");
    let mut menu = vec![0x00, 0x00, 17];
    menu.extend_from_slice(b"Raspberry Pi Boot");
    assert_eq!(subs, vec![(9, menu), (10, vec![0, b'P', b'X', b'E'])]);
}

#[test]
fn raspberry_pi_answers_can_be_turned_off() {
    let mut config = base_config();
    config.proxy.raspberry_pi = false;
    let policy = policy(config);
    let request = raspberry_pi_discover();
    let (_, bytes) = answer(&policy, &on_67(&request)).unwrap();
    let (subs, _) = sub_options(&vendor_options(&decode(&bytes)).unwrap());
    assert!(
        subs.iter()
            .any(|(code, v)| *code == 9 && v.windows(13).any(|w| w == b"Install Linux")),
        "without raspberry_pi a Pi gets the BIOS menu: {subs:?}"
    );
}

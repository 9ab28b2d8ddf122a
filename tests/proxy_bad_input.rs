//! Malformed DHCP sent to a running proxyDHCP server, inside network
//! namespaces: truncated headers, a bad magic cookie, options overrunning
//! the packet, hlen > 16, an empty option 93, 1500 bytes of padding. Each
//! gets silence, the server stays up, and the next good DISCOVER is
//! answered with an OFFER broadcast to port 68.

mod common;
mod netns;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use netns::{Link, NsServer};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/dhcp/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect(name)
}

/// Offset of the options (after the 236-byte header and the cookie).
const OPTIONS: usize = 240;

/// Finds option `code` in a well-formed request: (offset of its code byte, length).
fn find_option(packet: &[u8], code: u8) -> (usize, usize) {
    let mut i = OPTIONS;
    while i + 1 < packet.len() && packet[i] != 255 {
        if packet[i] == 0 {
            i += 1;
            continue;
        }
        if packet[i] == code {
            return (i, usize::from(packet[i + 1]));
        }
        i += 2 + usize::from(packet[i + 1]);
    }
    panic!("option {code} not in fixture");
}

fn bad_packets(good: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    out.push(("empty datagram", Vec::new()));
    out.push(("truncated header (100 bytes)", good[..100].to_vec()));
    out.push(("header without cookie", good[..236].to_vec()));
    let mut cookie = good.to_vec();
    cookie[236] ^= 0xff;
    out.push(("bad magic cookie", cookie));
    let mut hlen = good.to_vec();
    hlen[2] = 17;
    out.push(("hlen 17", hlen));
    // Option 93 present but empty: the architecture is unknown.
    let (at, len) = find_option(good, 93);
    let mut empty93 = good[..at].to_vec();
    empty93.extend_from_slice(&[93, 0]);
    empty93.extend_from_slice(&good[at + 2 + len..]);
    out.push(("empty option 93", empty93));
    // Option 60 claims more bytes than the packet holds, before option 93.
    let (at60, _) = find_option(good, 60);
    let (at93, _) = find_option(good, 93);
    let first = at60.min(at93);
    let mut overrun = good[..first].to_vec();
    overrun.extend_from_slice(&[60, 250, b'P', b'X']);
    out.push(("option overrunning the packet", overrun));
    // 1500 bytes of PAD and nothing else after the cookie.
    let mut padding = good[..OPTIONS].to_vec();
    padding.extend(std::iter::repeat_n(0u8, 1500));
    out.push(("1500 bytes of padding", padding));
    out.push((
        "random bytes",
        (0..600u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
    ));
    out
}

#[test]
fn malformed_dhcp_gets_silence_and_the_next_good_request_an_offer() {
    netns::require_root();
    let link = Link::new("pd", 77);
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("pxelinux.0"), b"boot").unwrap();
    std::fs::write(root.path().join("ipxe.efi"), b"boot").unwrap();
    let server_ip = link.server_ip;
    let log = root.path().join("server.log");
    let mut server = NsServer::spawn(
        &link.server,
        &link.client,
        root.path(),
        SocketAddr::new(server_ip, 69),
        "epoll",
        &["--boot", "bios=pxelinux.0", "--boot", "x64-uefi=ipxe.efi"],
        log,
    );
    // The client side listens where offers are broadcast: port 68.
    let client: UdpSocket = link
        .client
        .udp_bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 68)));
    client.set_broadcast(true).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let to = SocketAddr::new(server_ip, 67);
    let good = fixture("ovmf_x64_discover.bin");

    let offer_for = |xid: u32| {
        let mut buf = [0u8; 2048];
        let mut request = good.clone();
        request[4..8].copy_from_slice(&xid.to_be_bytes());
        client.send_to(&request, to).unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok((n, _)) = client.recv_from(&mut buf) {
                let reply = &buf[..n];
                if reply.len() >= OPTIONS && reply[0] == 2 && reply[4..8] == xid.to_be_bytes() {
                    assert_eq!(
                        &reply[16..20],
                        &[0, 0, 0, 0],
                        "the proxy offered an address"
                    );
                    return true;
                }
            }
        }
        false
    };
    assert!(
        offer_for(0x1000),
        "no offer for a good DISCOVER before the bad input"
    );
    let mut buf = [0u8; 2048];
    for (i, (what, packet)) in bad_packets(&good).into_iter().enumerate() {
        client.send_to(&packet, to).unwrap();
        if let Ok((n, _)) = client.recv_from(&mut buf) {
            panic!("{what}: got a {n}-byte reply, expected silence");
        }
        server.assert_alive();
        assert!(
            offer_for(0x2000 + i as u32),
            "{what}: the next good DISCOVER got no offer"
        );
    }
}

//! DHCP parse + proxy answer for a BIOS DISCOVER, a UEFI DISCOVER and a
//! port-4011 REQUEST (recorded fixtures), with dhcproto's decode of the
//! same packets beside it as a reference point.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

use criterion::{Criterion, criterion_group, criterion_main};
use dhcproto::{Decodable, Decoder};
use rackboot::dhcp::{Arch, BootEntry, MAX_REPLY_LEN, Policy, ProxyConfig, Request, ServerPort};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/dhcp/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect(name)
}

fn policy() -> Policy {
    let mut config = ProxyConfig::default();
    config.boot.push(BootEntry::new(Arch::Bios, "pxelinux.0"));
    config.boot.push(BootEntry::new(Arch::X64Uefi, "ipxe.efi"));
    Policy::new(config).unwrap()
}

fn answer(c: &mut Criterion) {
    let policy = policy();
    let cases = [
        ("BIOS DISCOVER", "intel_bios_discover.bin", ServerPort::Dhcp),
        ("UEFI DISCOVER", "ovmf_x64_discover.bin", ServerPort::Dhcp),
        ("4011 REQUEST", "ovmf_x64_request_4011.bin", ServerPort::Pxe),
    ];
    let mut g = c.benchmark_group("dhcp");
    for (label, file, port) in cases {
        let bytes = fixture(file);
        let mut out = [0u8; MAX_REPLY_LEN];
        let source = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 50), 68);
        assert!(
            policy
                .answer(
                    &Request {
                        bytes: &bytes,
                        port,
                        source,
                        local_addr: Ipv4Addr::new(10, 0, 0, 1)
                    },
                    &mut out
                )
                .is_ok()
        );
        g.bench_function(format!("rackboot parse + answer: {label}"), |b| {
            b.iter(|| {
                let request = Request {
                    bytes: black_box(&bytes),
                    port,
                    source,
                    local_addr: Ipv4Addr::new(10, 0, 0, 1),
                };
                policy.answer(&request, &mut out).map(|r| r.len)
            })
        });
        g.bench_function(format!("dhcproto decode only: {label}"), |b| {
            b.iter(|| dhcproto::v4::Message::decode(&mut Decoder::new(black_box(&bytes))).is_ok())
        });
    }
    g.finish();
}

criterion_group!(benches, answer);
criterion_main!(benches);

//! The proxy policy on any bytes: no panic, and any reply is a well-formed
//! BOOTREPLY with the request's xid that never offers an address (the
//! 4011 ACK echoes ciaddr, yiaddr 0).
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rackboot::dhcp::{
    Arch, BootEntry, MAX_REPLY_LEN, Policy, ProxyConfig, ReplyKind, Request, ServerPort,
};
use rackboot::wire::dhcp::Packet;

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let mut config = ProxyConfig::default();
        config.boot.push(BootEntry::new(Arch::Bios, "pxelinux.0"));
        config.boot.push(BootEntry::new(Arch::X64Uefi, "ipxe.efi"));
        config
            .boot
            .push(BootEntry::new(Arch::Arm64Uefi, "grubaa64.efi"));
        config.proxy.ipxe_script = Some("boot.ipxe".into());
        Policy::new(config).expect("valid config")
    })
}

fuzz_target!(|data: &[u8]| {
    let (port, bytes) = match data.split_first() {
        Some((p, rest)) if p & 1 == 1 => (ServerPort::Pxe, rest),
        Some((_, rest)) => (ServerPort::Dhcp, rest),
        None => return,
    };
    let request = Request {
        bytes,
        port,
        source: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 7), 68),
        local_addr: Ipv4Addr::new(10, 0, 0, 1),
    };
    let mut out = [0u8; MAX_REPLY_LEN];
    let Ok(reply) = policy().answer(&request, &mut out) else {
        return;
    };
    let req = Packet::new_checked(bytes).expect("answered requests parse");
    let rep = Packet::new_checked(&out[..reply.len]).expect("replies parse");
    assert_eq!(rep.op(), 2);
    assert_eq!(rep.xid(), req.xid());
    assert_eq!(rep.chaddr(), req.chaddr());
    // A proxy never offers an address; the boot server's ACK echoes the
    // client's own in ciaddr.
    assert_eq!(rep.yiaddr(), Ipv4Addr::UNSPECIFIED, "offered an address");
    match reply.kind {
        ReplyKind::Offer => assert_eq!(rep.ciaddr(), Ipv4Addr::UNSPECIFIED),
        ReplyKind::Ack => assert_eq!(rep.ciaddr(), req.ciaddr()),
    }
});

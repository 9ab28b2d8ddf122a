//! SIGHUP reloads the configuration for new requests only: the proxy's
//! boot entries change at once, a download under way finishes untouched,
//! an invalid file changes nothing and its error names file:line, and a
//! setting that needs a restart says so.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Fixture, Io, Server, ServerConfig, TestFile, free_proxy_ports, rrq};
use dhcproto::{Decodable, Decoder, v4::Message};

/// OVMF's port-4011 REQUEST, recorded, with ciaddr made 127.0.0.1 so the
/// ACK comes back to this test's socket.
fn request_4011() -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/dhcp/ovmf_x64_request_4011.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut packet = std::fs::read(path).unwrap();
    packet[12..16].copy_from_slice(&[127, 0, 0, 1]);
    packet
}

/// The boot file the proxy's 4011 ACK names for an x64 UEFI machine.
fn acked_file(pxe_port: u16) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        socket
            .send_to(&request_4011(), ("127.0.0.1", pxe_port))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            let ack = Message::decode(&mut Decoder::new(&buf[..n])).expect("a DHCP ACK");
            let file = ack.fname().unwrap_or_default();
            return String::from_utf8_lossy(file)
                .trim_end_matches('\0')
                .to_owned();
        }
    }
    panic!("no ACK from the proxy on port {pxe_port}");
}

/// A lock-step TFTP read this test drives block by block, so it is
/// provably under way while the configuration changes.
struct SlowRead {
    socket: UdpSocket,
    got: Vec<u8>,
    /// The block number wanted next (resent blocks are ACKed, not kept).
    next: u16,
    done: bool,
}

impl SlowRead {
    fn start(server: SocketAddr, file: &str) -> SlowRead {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket.send_to(&rrq(file, &[]), server).unwrap();
        SlowRead {
            socket,
            got: Vec::new(),
            next: 1,
            done: false,
        }
    }

    /// Takes DATA until the next new block (512 bytes at most), ACKing
    /// each; a block the server resent while the test was busy is ACKed
    /// again and dropped.
    fn step(&mut self) {
        let mut buf = [0u8; 600];
        loop {
            let (n, from) = self.socket.recv_from(&mut buf).expect("a DATA block");
            assert_eq!(&buf[..2], &[0, 3], "not DATA: {:?}", &buf[..n.min(40)]);
            self.socket.send_to(&[0, 4, buf[2], buf[3]], from).unwrap();
            if u16::from_be_bytes([buf[2], buf[3]]) == self.next {
                self.got.extend_from_slice(&buf[4..n]);
                self.next = self.next.wrapping_add(1);
                self.done = n - 4 < 512;
                return;
            }
        }
    }
}

fn write_config(path: &Path, file: &str, extra: &str) {
    std::fs::write(
        path,
        format!("{extra}\n[[boot]]\narch = \"x64-uefi\"\nfile = \"{file}\"\n"),
    )
    .unwrap();
}

fn hangup(server: &Server) {
    // SAFETY: kill(2) on the PID of the server this test started.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) }, 0);
}

fn wait_log(server: &Server, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.log_tail().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "log lacks {needle:?} x{count}:\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_swaps_the_configuration_for_new_requests_only() {
    let big = TestFile {
        name: "big.img",
        size: 20_000,
    };
    let fixture = Fixture::new(&[big]);
    let config = fixture.dir.path().join("rackboot.toml");
    write_config(&config, "first.efi", "");
    let (dhcp_port, pxe_port) = free_proxy_ports();
    let mut cfg = ServerConfig::new(Io::Uring);
    cfg.extra_args = [
        "--config",
        config.to_str().unwrap(),
        "--dhcp-port",
        &dhcp_port.to_string(),
        "--pxe-port",
        &pxe_port.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let server = Server::spawn(&fixture.root(), &cfg);
    assert_eq!(acked_file(pxe_port), "first.efi");

    // A download runs across every reload below, a block between each.
    let mut download = SlowRead::start(server.addr_v4(), "big.img");
    download.step();

    write_config(&config, "second.efi", "");
    hangup(&server);
    wait_log(&server, "configuration reloaded", 1);
    assert_eq!(
        acked_file(pxe_port),
        "second.efi",
        "new requests get the new entry"
    );
    download.step();

    // An invalid file: the error names file:line, nothing changes.
    std::fs::write(&config, "max_window = 16\nmax_blocksize = 1468\n").unwrap();
    hangup(&server);
    wait_log(&server, "the configuration stays as it was", 1);
    assert!(
        server.log_tail().contains(&format!(
            "{}:2: unknown field `max_blocksize`",
            config.display()
        )),
        "{}",
        server.log_tail()
    );
    assert_eq!(acked_file(pxe_port), "second.efi");
    download.step();

    // A shard setting waits for a restart, and says so.
    write_config(&config, "third.efi", "max_window = 8\n");
    hangup(&server);
    wait_log(&server, "configuration reloaded", 2);
    assert!(
        server
            .log_tail()
            .contains("a TFTP or HTTP setting (limits, options, ports, uploads, backend) changed: takes effect at the next start"),
        "{}",
        server.log_tail()
    );
    assert_eq!(acked_file(pxe_port), "third.efi");

    while !download.done {
        download.step();
    }
    assert!(
        download.got == std::fs::read(fixture.root().join("big.img")).unwrap(),
        "the download across the reloads is not byte-exact ({} bytes)",
        download.got.len()
    );
}

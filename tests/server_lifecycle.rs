//! Server behaviour around requests and restarts: a retransmitted request
//! starts no second transfer, and a draining server lets a new one bind.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Fixture, Io, ServerConfig, TestFile, rrq};

const FILE: TestFile = TestFile {
    name: "boot.bin",
    size: 1 << 20,
};

fn fixture() -> Fixture {
    Fixture::new(&[FILE])
}

#[test]
fn retransmitted_rrq_starts_no_second_transfer() {
    for io in [Io::Epoll, Io::Uring] {
        let fx = fixture();
        let server = common::Server::spawn(&fx.root(), &ServerConfig::new(io));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let request = rrq(FILE.name, &[("blksize", "1468")]);
        client.send_to(&request, server.addr_v4()).unwrap();
        client.send_to(&request, server.addr_v4()).unwrap(); // the same RRQ again, same port
        let mut buf = [0u8; 2048];
        let mut sources = std::collections::HashSet::new();
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if let Ok((_, from)) = client.recv_from(&mut buf) {
                sources.insert(from);
            }
        }
        assert_eq!(
            sources.len(),
            1,
            "{io:?}: replies came from {sources:?}: a second transfer was started"
        );
        for tid in sources {
            client
                .send_to(&common::error_packet(0, "test done"), tid)
                .unwrap();
        }
        server.stop();
    }
}

#[test]
fn a_draining_server_lets_a_new_one_bind() {
    for io in [Io::Epoll, Io::Uring] {
        let fx = fixture();
        let mut cfg = ServerConfig::new(io);
        cfg.extra_args = vec!["--give-up".into(), "2".into()];
        let mut server = common::Server::spawn(&fx.root(), &cfg);
        // A transfer that is never acknowledged keeps the old server
        // draining for its give-up time.
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .send_to(&rrq(FILE.name, &[]), server.addr_v4())
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        server.signal_term();
        std::thread::sleep(Duration::from_millis(300));
        let status = Command::new(env!("CARGO_BIN_EXE_rackboot"))
            .args(["check", "--root"])
            .arg(fx.root())
            .args(["--listen", &server.addr_v4().to_string()])
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&status.stdout);
        assert!(
            status.status.success(),
            "{io:?}: port still held while draining:\n{report}"
        );
        server.assert_alive();
    }
}

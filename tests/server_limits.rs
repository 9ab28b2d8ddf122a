//! Limits and privileges: busy answers past the caps (never silence),
//! uploads refused by default and stored atomically when allowed, the
//! privileged-port error that names its fixes, and --user.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::{Fixture, Io, ServerConfig, TestFile, error_packet, packet_summary, rrq};

const FILE: TestFile = TestFile {
    name: "boot.bin",
    size: 200_000,
};

/// Sends an RRQ from a fresh socket and returns the first reply.
fn first_reply(server: &common::Server, file: &str) -> (UdpSocket, Vec<u8>, std::net::SocketAddr) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&rrq(file, &[]), server.addr_v4()).unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, from) = sock
        .recv_from(&mut buf)
        .expect("no answer: silence instead of ERROR");
    buf.truncate(n);
    (sock, buf, from)
}

#[test]
fn past_the_caps_requests_get_server_busy() {
    for (io, flag) in [
        (Io::Epoll, "--max-per-client"),
        (Io::Uring, "--max-transfers"),
    ] {
        let fx = Fixture::new(&[FILE]);
        let mut cfg = ServerConfig::new(io);
        cfg.extra_args = vec![flag.into(), "2".into()];
        let server = common::Server::spawn(&fx.root(), &cfg);
        let mut running = Vec::new();
        for _ in 0..2 {
            let (sock, reply, tid) = first_reply(&server, FILE.name);
            assert_eq!(
                &reply[..2],
                &[0, 3],
                "{io:?}: expected DATA, got {}",
                packet_summary(&reply)
            );
            running.push((sock, tid));
        }
        let (_, reply, _) = first_reply(&server, FILE.name);
        assert_eq!(
            &reply[..4],
            &[0, 5, 0, 0],
            "{io:?} {flag}: expected ERROR 0, got {}",
            packet_summary(&reply)
        );
        assert!(
            String::from_utf8_lossy(&reply).contains("busy"),
            "{}",
            packet_summary(&reply)
        );
        // Freed capacity is usable again.
        for (sock, tid) in &running {
            sock.send_to(&error_packet(0, "done"), tid).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        let (sock, reply, tid) = first_reply(&server, FILE.name);
        assert_eq!(
            &reply[..2],
            &[0, 3],
            "{io:?}: capacity not returned: {}",
            packet_summary(&reply)
        );
        sock.send_to(&error_packet(0, "done"), tid).unwrap();
        server.stop();
    }
}

fn tftp_put(server: &common::Server, local: &std::path::Path, remote: &str) -> String {
    let out = Command::new("timeout")
        .args([
            "60",
            "tftp",
            "-v",
            "-m",
            "binary",
            "127.0.0.1",
            &server.port().to_string(),
            "-c",
            "put",
        ])
        .arg(local)
        .arg(remote)
        .output()
        .expect("run tftp (tftp-hpa)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn uploads_are_refused_unless_allowed_then_stored_atomically() {
    common::require_program("tftp");
    let fx = Fixture::new(&[FILE]);
    let local = fx.dir.path().join("upload.src");
    let content = common::pattern_bytes("upload", 300_000);
    std::fs::write(&local, &content).unwrap();

    let server = common::Server::spawn(&fx.root(), &ServerConfig::new(Io::Epoll));
    let out = tftp_put(&server, &local, "new.bin");
    assert!(
        out.contains("Error code 2"),
        "upload not refused by default: {out}"
    );
    assert!(!fx.root().join("new.bin").exists());
    server.stop();

    for io in [Io::Epoll, Io::Uring] {
        let mut cfg = ServerConfig::new(io);
        cfg.extra_args = vec![
            "--allow-upload".into(),
            "--max-upload".into(),
            "400000".into(),
        ];
        let server = common::Server::spawn(&fx.root(), &cfg);
        let name = format!("new-{io:?}.bin");
        let out = tftp_put(&server, &local, &name);
        assert!(!out.contains("Error"), "{io:?}: upload failed: {out}");
        assert_eq!(
            std::fs::read(fx.root().join(&name)).unwrap(),
            content,
            "{io:?}: stored bytes differ"
        );
        // Never overwrite, never escape, never exceed the bound.
        assert!(
            tftp_put(&server, &local, &name).contains("Error code 6"),
            "{io:?}: overwrote an existing file"
        );
        assert!(
            tftp_put(&server, &local, "../escape.bin").contains("Error"),
            "{io:?}: wrote outside the root"
        );
        let big = fx.dir.path().join("big.src");
        std::fs::write(&big, vec![1u8; 500_000]).unwrap();
        assert!(
            tftp_put(&server, &big, "big.bin").contains("Error code 3"),
            "{io:?}: bound not enforced"
        );
        assert!(!fx.root().join("big.bin").exists());
        let leftovers: Vec<_> = std::fs::read_dir(fx.root())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{io:?}: temporary files left behind: {leftovers:?}"
        );
        server.stop();
    }
}

#[test]
fn a_privileged_port_without_privilege_names_the_fixes() {
    common::require_program("setpriv");
    let fx = Fixture::new(&[FILE]);
    let out = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_rackboot"))
        .arg("--root")
        .arg(fx.root())
        .args(["--listen", "127.0.0.1:69"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "bound port 69 without privilege?");
    for fix in ["root", "setcap cap_net_bind_service", "6969"] {
        assert!(
            text.contains(fix),
            "error does not mention `{fix}`:\n{text}"
        );
    }
}

#[test]
fn drops_to_the_given_user_after_binding() {
    let fx = Fixture::new(&[FILE]);
    let mut cfg = ServerConfig::new(Io::Epoll);
    cfg.extra_args = vec!["--user".into(), "nobody".into()];
    // The fixture's files must be readable by nobody.
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(fx.dir.path())
        .status()
        .unwrap();
    let server = common::Server::spawn(&fx.root(), &cfg);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|id| id == "65534"),
        "still privileged: {uid_line}"
    );
    let (sock, reply, tid) = first_reply(&server, FILE.name);
    assert_eq!(
        &reply[..2],
        &[0, 3],
        "nothing served after dropping privileges: {}",
        packet_summary(&reply)
    );
    sock.send_to(&error_packet(0, "done"), tid).unwrap();
    server.stop();
}

//! The Landlock sandbox: with it on, a path outside the root is refused by
//! the kernel even where our own resolution (openat2 RESOLVE_BENEATH) is
//! bypassed. The server's test-only `--test-open-after-sandbox PATH` does
//! exactly that bypass: a plain open() of an absolute path once the sandbox
//! is applied, its outcome logged. A file outside the root, readable by
//! root, gets EACCES (also with `--user root`: the kernel's sandbox, not
//! file permissions); a file inside the root opens. The configuration stays
//! readable for SIGHUP, also when an editor replaces it by rename.
//!
//! Needs root and a kernel with Landlock (CI has both); without them the
//! tests fail and say so.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Fixture, Io, SECRET, SMALL, Server, ServerConfig, exchange, rrq};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "tests/sandbox.rs starts the server as root: run the tests as root (CI does)"
    );
}

/// Waits (bounded) for `needle` to appear `count` times in the log.
fn wait_log(server: &Server, needle: &str, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log_tail();
        if log.matches(needle).count() >= count {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "log lacks {needle:?} x{count}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn test_open(path: &Path) -> [String; 2] {
    [
        "--test-open-after-sandbox".into(),
        path.to_str().unwrap().into(),
    ]
}

fn assert_enforced(log: &str) {
    assert!(
        log.lines()
            .any(|l| l.contains("sandbox: Landlock (ABI") && l.contains(" enforced")),
        "the sandbox is not enforced (a kernel without Landlock fails this test):\n{log}"
    );
}

#[test]
fn the_kernel_refuses_a_path_outside_the_root_past_our_resolution() {
    require_root();
    // As root (Landlock alone refuses) and dropped to the default user.
    for (io, dropped) in [(Io::Epoll, false), (Io::Uring, true)] {
        let fx = Fixture::new(&[SMALL]);
        let secret = fx.outside().join("secret.txt");
        let inside = fx.root().join(SMALL.name);
        assert_eq!(std::fs::read(&secret).unwrap(), SECRET, "root reads it");
        let mut cfg = ServerConfig::new(io);
        if dropped {
            cfg = cfg.dropped();
            // Readable by anyone, so only the sandbox can refuse it.
            std::fs::set_permissions(
                fx.outside(),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
        }
        cfg.extra_args = [
            test_open(&secret),
            test_open(&inside),
            test_open(Path::new("/etc/passwd")),
        ]
        .concat()
        .to_vec();
        let server = Server::spawn(&fx.root(), &cfg);
        let log = wait_log(&server, "test open after sandbox", 3);
        assert_enforced(&log);
        for refused in [secret.as_path(), Path::new("/etc/passwd")] {
            let line = format!(
                "test open after sandbox: {}: Permission denied (os error 13)",
                refused.display()
            );
            assert!(
                log.contains(&line),
                "{io:?} dropped={dropped}: {line:?} missing:\n{log}"
            );
        }
        let line = format!("test open after sandbox: {}: opened", inside.display());
        assert!(log.contains(&line), "{io:?}: {line:?} missing:\n{log}");
        // The first line of defence still answers for names sent over TFTP.
        let (reply, _) = exchange(
            server.addr_v4(),
            &rrq("../outside/secret.txt", &[]),
            Duration::from_secs(2),
        )
        .expect("an answer");
        assert_eq!(
            &reply[..2],
            [0, 5],
            "an ERROR for a name that leaves the root"
        );
        // And the root itself is served (one short DATA, acknowledged).
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        client
            .send_to(&rrq(SMALL.name, &[]), server.addr_v4())
            .unwrap();
        let mut buf = [0u8; 600];
        let (n, from) = client.recv_from(&mut buf).expect("an answer");
        assert_eq!(
            (&buf[..4], n - 4),
            (&[0, 3, 0, 1][..], SMALL.size as usize),
            "DATA 1, whole"
        );
        client.send_to(&[0, 4, 0, 1], from).unwrap();
        server.stop();
    }
}

#[test]
fn configuration_replaced_by_rename_is_reloaded_inside_the_sandbox() {
    require_root();
    let fx = Fixture::new(&[SMALL]);
    let etc = fx.dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let config = etc.join("rackboot.toml");
    let dnsmasq = etc.join("dnsmasq.conf");
    std::fs::write(&config, "max_window = 16\n").unwrap();
    std::fs::write(&dnsmasq, "enable-tftp\n").unwrap();
    let mut cfg = ServerConfig::new(Io::Epoll);
    cfg.extra_args = [
        vec![
            "--config".into(),
            config.to_str().unwrap().into(),
            "--dnsmasq-conf".into(),
            dnsmasq.to_str().unwrap().into(),
        ],
        test_open(&fx.outside().join("secret.txt")).to_vec(),
        test_open(&config).to_vec(),
    ]
    .concat();
    let server = Server::spawn(&fx.root(), &cfg);
    let log = wait_log(&server, "test open after sandbox", 2);
    assert_enforced(&log);
    assert!(
        log.contains(&format!("reading beneath {}", etc.display())),
        "the configuration's directory is readable:\n{log}"
    );
    assert!(
        log.contains("secret.txt: Permission denied (os error 13)"),
        "{log}"
    );
    assert!(log.contains("rackboot.toml: opened"), "{log}");
    // As an editor saves: a new file renamed over the old one (a new inode).
    for (path, text) in [
        (&config, "max_window = 8\n"),
        (&dnsmasq, "enable-tftp\ntftp-no-blocksize\n"),
    ] {
        let tmp = path.with_extension("swp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    // SAFETY: kill(2) on the PID of the server this test started.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) }, 0);
    let log = wait_log(&server, "SIGHUP:", 1);
    assert!(
        log.contains("SIGHUP: configuration reloaded"),
        "the replaced files were read again:\n{log}"
    );
    server.stop();
}

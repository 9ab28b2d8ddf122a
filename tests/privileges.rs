//! Least privilege: started as root, the server binds its ports and then
//! runs as `rackboot` (else `nobody`, else 65534) with CAP_LEASE as its only
//! capability (permitted and effective, in every thread), empty inheritable
//! and ambient sets, a bounding set of CAP_LEASE alone and no_new_privs;
//! `--user` chooses another user (a name, `UID` or `UID:GID`, with or
//! without a passwd entry); `--user root` keeps root and says so in one
//! warning line. After the drop, read leases are still taken on root-owned
//! files (CAP_LEASE): /proc/locks shows the server's lease while it serves.
//!
//! Needs root (CI runs as root); without it every test fails and says so.

mod common;

use std::net::UdpSocket;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Fixture, Io, Server, ServerConfig, TestFile, error_packet, rrq};

const CAP_LEASE: u64 = 1 << 28;

const FILE: TestFile = TestFile {
    name: "boot.bin",
    size: 4 << 20,
};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "tests/privileges.rs starts the server as root: run the tests as root (CI does)"
    );
}

/// The fields of /proc/PID[/task/TID]/status.
fn status(path: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn field<'a>(status: &'a [(String, String)], key: &str) -> &'a str {
    status
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in status"))
}

fn caps(status: &[(String, String)], key: &str) -> u64 {
    u64::from_str_radix(field(status, key), 16).unwrap()
}

/// Every thread of `pid`'s status (credentials are per thread).
fn threads(pid: u32) -> Vec<(String, Vec<(String, String)>)> {
    let dir = format!("/proc/{pid}/task");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let tid = e.unwrap().file_name().into_string().unwrap();
            let s = status(&format!("{dir}/{tid}/status"));
            (tid, s)
        })
        .collect()
}

/// The user a server started as root drops to by default.
fn default_user() -> (String, u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for name in ["rackboot", "nobody"] {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3 && f[0] == name {
                return (name.into(), f[2].parse().unwrap(), f[3].parse().unwrap());
            }
        }
    }
    ("65534".into(), 65534, 65534)
}

/// Asserts the server runs as `uid`/`gid` in every thread, with only
/// CAP_LEASE, and prints the final sets.
fn assert_dropped(server: &Server, uid: u32, gid: u32) {
    let main = status(&format!("/proc/{}/status", server.pid()));
    eprintln!(
        "server pid {}: Uid {} / Gid {} / CapPrm {} / CapEff {} / CapInh {} / CapAmb {} / CapBnd {} / NoNewPrivs {}",
        server.pid(),
        field(&main, "Uid"),
        field(&main, "Gid"),
        field(&main, "CapPrm"),
        field(&main, "CapEff"),
        field(&main, "CapInh"),
        field(&main, "CapAmb"),
        field(&main, "CapBnd"),
        field(&main, "NoNewPrivs"),
    );
    let all = threads(server.pid());
    assert!(all.len() > 1, "the serving threads are running");
    for (tid, s) in &all {
        let ids = |k| {
            field(s, k)
                .split_whitespace()
                .map(|v| v.parse::<u32>().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids("Uid"),
            [uid; 4],
            "thread {tid}: real, effective, saved, fs uid"
        );
        assert_eq!(ids("Gid"), [gid; 4], "thread {tid}: gids");
        assert_eq!(field(s, "Groups"), "", "thread {tid}: supplementary groups");
        assert_eq!(caps(s, "CapPrm"), CAP_LEASE, "thread {tid}: CapPrm");
        assert_eq!(caps(s, "CapEff"), CAP_LEASE, "thread {tid}: CapEff");
        assert_eq!(caps(s, "CapInh"), 0, "thread {tid}: CapInh");
        assert_eq!(caps(s, "CapAmb"), 0, "thread {tid}: CapAmb");
        assert_eq!(caps(s, "CapBnd"), CAP_LEASE, "thread {tid}: CapBnd");
        assert_eq!(field(s, "NoNewPrivs"), "1", "thread {tid}: NoNewPrivs");
    }
}

/// The server's whole log so far, once it contains `what` (bounded wait).
fn log_with(server: &Server, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = server.log_tail();
        if log.contains(what) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn started_as_root_without_user_drops_to_the_default_keeping_only_cap_lease() {
    require_root();
    let (name, uid, gid) = default_user();
    for io in [Io::Epoll, Io::Uring] {
        let fx = Fixture::new(&[FILE]);
        let server = Server::spawn(&fx.root(), &ServerConfig::new(io).dropped());
        assert_dropped(&server, uid, gid);
        let line = format!(
            "dropped privileges to {name} (uid {uid}, gid {gid}), keeping capabilities: CAP_LEASE"
        );
        let log = log_with(&server, &line);
        assert_eq!(
            log.matches(&line).count(),
            1,
            "{io:?}: one line says so:\n{log}"
        );
        assert!(!log.contains("keeping root"), "{io:?}:\n{log}");
        assert!(
            !log.contains("CAP_LEASE is not available"),
            "{io:?}:\n{log}"
        );
        server.stop();
    }
}

#[test]
fn user_by_name_and_by_number_with_or_without_a_passwd_entry() {
    require_root();
    let (_, nobody_uid, nobody_gid) = default_user();
    let cases: [(&str, u32, u32); 3] = [
        ("nobody", nobody_uid, nobody_gid),
        // As in a FROM-scratch container: numbers, no passwd entry needed.
        ("65534", 65534, 65534),
        ("4242:4243", 4242, 4243),
    ];
    for (user, uid, gid) in cases {
        let fx = Fixture::new(&[FILE]);
        let mut cfg = ServerConfig::new(Io::Epoll);
        cfg.user = Some(user.into());
        let server = Server::spawn(&fx.root(), &cfg);
        assert_dropped(&server, uid, gid);
        let log = log_with(&server, "dropped privileges");
        assert!(
            log.contains(&format!(
                "(uid {uid}, gid {gid}), keeping capabilities: CAP_LEASE"
            )),
            "--user {user}:\n{log}"
        );
        server.stop();
    }
}

#[test]
fn user_root_keeps_root_and_warns_in_one_line() {
    require_root();
    let fx = Fixture::new(&[FILE]);
    let server = Server::spawn(&fx.root(), &ServerConfig::new(Io::Epoll)); // --user root
    let mine = status("/proc/self/status");
    let main = status(&format!("/proc/{}/status", server.pid()));
    eprintln!(
        "server pid {} (--user root): Uid {} / CapPrm {} / CapEff {}",
        server.pid(),
        field(&main, "Uid"),
        field(&main, "CapPrm"),
        field(&main, "CapEff")
    );
    assert_eq!(field(&main, "Uid"), "0\t0\t0\t0");
    assert_eq!(
        caps(&main, "CapEff"),
        caps(&mine, "CapEff"),
        "root keeps its capabilities"
    );
    assert_eq!(caps(&main, "CapPrm"), caps(&mine, "CapPrm"));
    let log = log_with(&server, "keeping root");
    let said: Vec<&str> = log.lines().filter(|l| l.contains("keeping root")).collect();
    assert_eq!(said.len(), 1, "exactly one line says so:\n{log}");
    assert!(
        said[0].contains("WARN") && said[0].contains("--user root: keeping root"),
        "a warning says root is kept:\n{log}"
    );
    assert!(!log.contains("dropped privileges"), "{log}");
    server.stop();
}

#[test]
fn only_root_switches_users() {
    require_root();
    let fx = Fixture::new(&[FILE]);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_rackboot"))
        .arg("--root")
        .arg(fx.root())
        .args(["--listen", "127.0.0.1:0", "--user", "4242"])
        .output()
        .expect("run setpriv (util-linux)");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "switched users without root?\n{text}"
    );
    assert!(text.contains("only root can switch users"), "{text}");
}

/// The server's read lease on the file with inode `ino`, from /proc/locks
/// (`N: LEASE  ACTIVE    READ PID MAJ:MIN:INODE 0 EOF`).
fn lease_line(pid: u32, ino: u64) -> Option<String> {
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    locks
        .lines()
        .find(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 6
                && f[1] == "LEASE"
                && l.contains("READ")
                && f.iter().any(|x| *x == pid.to_string())
                && f.iter()
                    .any(|x| x.rsplit(':').next() == Some(&ino.to_string()) && x.contains(':'))
        })
        .map(str::to_string)
}

#[test]
fn read_lease_taken_on_a_root_owned_file_after_the_drop() {
    require_root();
    let (_, uid, gid) = default_user();
    for io in [Io::Epoll, Io::Uring] {
        let fx = Fixture::new(&[FILE]);
        let path = fx.root().join(FILE.name);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.mode() & 0o777),
            (0, 0o644),
            "root-owned, 0644"
        );
        let server = Server::spawn(&fx.root(), &ServerConfig::new(io).dropped());
        assert_dropped(&server, uid, gid);
        assert!(
            lease_line(server.pid(), meta.ino()).is_none(),
            "no lease before serving"
        );
        // Start a transfer and leave it waiting for our first ACK.
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        client
            .send_to(&rrq(FILE.name, &[("blksize", "1468")]), server.addr_v4())
            .unwrap();
        let mut buf = [0u8; 2048];
        let (n, transfer) = client.recv_from(&mut buf).expect("an answer to the RRQ");
        assert_eq!(&buf[..2], [0, 6], "OACK, got {:02x?}", &buf[..n.min(8)]);
        let deadline = Instant::now() + Duration::from_secs(3);
        let lease = loop {
            if let Some(line) = lease_line(server.pid(), meta.ino()) {
                break line;
            }
            assert!(
                Instant::now() < deadline,
                "{io:?}: no read lease by pid {} on inode {} in /proc/locks:\n{}\n--- log ---\n{}",
                server.pid(),
                meta.ino(),
                std::fs::read_to_string("/proc/locks").unwrap(),
                server.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        eprintln!("{io:?}: {lease}");
        // End the transfer, so that the server stops at once.
        client.send_to(&error_packet(0, "done"), transfer).unwrap();
        server.stop();
    }
}

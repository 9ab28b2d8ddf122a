//! Shared helpers for the integration tests: spawning the server under test,
//! deterministic test files, hashing, and running external client programs
//! with a hard timeout.
//!
//! Each integration test binary uses a subset of these helpers.
#![allow(dead_code)]

pub mod load;

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Hard limit for one client invocation; a hang fails the test instead of CI.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the server may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub const LOCALHOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const LOCALHOST_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

// ---------------------------------------------------------------------------
// Server under test
// ---------------------------------------------------------------------------

/// I/O backend of the server (`--io`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    Epoll,
    Uring,
}

impl Io {
    pub fn as_arg(self) -> &'static str {
        match self {
            Io::Epoll => "epoll",
            Io::Uring => "uring",
        }
    }
}

/// Which program answers the tests.
///
/// Always `Rackboot` in CI. `RACKBOOT_TEST_SERVER=tftpd-hpa` swaps in
/// tftpd-hpa's `in.tftpd` (needs root), purely as a development aid to check
/// the harness itself against a known-good server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Rackboot,
    TftpdHpa,
}

impl ServerKind {
    pub fn from_env() -> ServerKind {
        match std::env::var("RACKBOOT_TEST_SERVER").as_deref() {
            Err(_) | Ok("") | Ok("rackboot") => ServerKind::Rackboot,
            Ok("tftpd-hpa") => {
                eprintln!(
                    "WARNING: RACKBOOT_TEST_SERVER=tftpd-hpa: testing the stand-in, NOT rackboot"
                );
                ServerKind::TftpdHpa
            }
            Ok(other) => {
                panic!("RACKBOOT_TEST_SERVER={other:?}: expected `rackboot` or `tftpd-hpa`")
            }
        }
    }

    /// The command line that serves `root` on every address in `listen`.
    fn command(self, root: &Path, listen: &[SocketAddr], cfg: &ServerConfig) -> Command {
        match self {
            ServerKind::Rackboot => {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_rackboot"));
                cmd.arg("--root").arg(root);
                for addr in listen {
                    cmd.arg("--listen").arg(addr.to_string());
                }
                cmd.args(["--io", cfg.io.as_arg()]);
                if cfg.single_port {
                    cmd.arg("--single-port");
                }
                cmd.args(&cfg.extra_args);
                let user_given = cfg.extra_args.iter().any(|a| a.starts_with("--user"));
                if let (Some(user), false) = (&cfg.user, user_given) {
                    cmd.args(["--user", user]);
                }
                cmd
            }
            ServerKind::TftpdHpa => {
                // in.tftpd binds one address; it ignores windowsize and has
                // no --io / --single-port equivalent (those are dropped).
                assert_eq!(listen.len(), 1, "the tftpd-hpa stand-in binds one address");
                assert!(
                    unsafe { libc::geteuid() } == 0,
                    "the tftpd-hpa stand-in chroots and must run as root"
                );
                require_program("in.tftpd");
                let mut cmd = Command::new("in.tftpd");
                cmd.args(["-L", "-u", "root", "-s"]).arg(root);
                cmd.arg("-a").arg(listen[0].to_string());
                cmd
            }
        }
    }
}

/// How to start the server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub io: Io,
    pub single_port: bool,
    /// Also listen on `[::1]` (same port as `127.0.0.1`).
    pub ipv6: bool,
    pub extra_args: Vec<String>,
    /// `--user`: `root` unless a test is about dropping privileges (test
    /// roots and configuration files are often private to root); `None`
    /// leaves the flag out, so a server started as root drops by default.
    /// A `--user` in `extra_args` wins.
    pub user: Option<String>,
}

impl ServerConfig {
    pub fn new(io: Io) -> ServerConfig {
        ServerConfig {
            io,
            single_port: false,
            ipv6: false,
            extra_args: Vec::new(),
            user: Some("root".into()),
        }
    }

    /// Without `--user`: started as root, the server drops to its default
    /// user (rackboot, else nobody) keeping only CAP_LEASE.
    pub fn dropped(mut self) -> ServerConfig {
        self.user = None;
        self
    }
}

/// A running server. Dropping it sends SIGTERM to that one PID (then
/// SIGKILL if it lingers); if the test is failing, the server's log is
/// printed.
pub struct Server {
    child: Child,
    kind: ServerKind,
    port: u16,
    ipv6: bool,
    log: PathBuf,
}

impl Server {
    /// Starts the server chosen by [`ServerKind::from_env`] on a free port.
    pub fn spawn(root: &Path, cfg: &ServerConfig) -> Server {
        Server::spawn_with(ServerKind::from_env(), root, cfg)
    }

    /// Starts `kind` serving `root` and waits until it answers TFTP.
    /// Retries on a fresh port if the server dies at start-up (another test
    /// or a client may have taken the port between probe and bind).
    pub fn spawn_with(kind: ServerKind, root: &Path, cfg: &ServerConfig) -> Server {
        let log_dir = root.parent().unwrap_or(root);
        let mut last_failure = String::new();
        for attempt in 0..3 {
            let port = free_udp_port(cfg.ipv6);
            let mut listen = vec![SocketAddr::new(LOCALHOST_V4, port)];
            if cfg.ipv6 {
                listen.push(SocketAddr::new(LOCALHOST_V6, port));
            }
            let log = log_dir.join(format!("server-{port}-{attempt}.log"));
            let mut cmd = kind.command(root, &listen, cfg);
            let cmdline = format!("{cmd:?}");
            let log_file = File::create(&log).expect("create server log");
            cmd.stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("dup server log"))
                .stderr(log_file);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start server `{cmdline}`: {e}"));
            let mut server = Server {
                child,
                kind,
                port,
                ipv6: cfg.ipv6,
                log,
            };
            match server.wait_ready(&listen) {
                Ok(()) => return server,
                Err(why) => {
                    last_failure = format!(
                        "{cmdline}: {why}\n--- server log ---\n{}",
                        server.log_tail()
                    );
                    // Drop stops it. Only a server that exited on its own
                    // is worth retrying on another port.
                    if server.child.try_wait().ok().flatten().is_none() {
                        break;
                    }
                }
            }
        }
        panic!("server did not become ready: {last_failure}");
    }

    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr_v4(&self) -> SocketAddr {
        SocketAddr::new(LOCALHOST_V4, self.port)
    }

    pub fn addr_v6(&self) -> SocketAddr {
        assert!(self.ipv6, "server was not started with ipv6");
        SocketAddr::new(LOCALHOST_V6, self.port)
    }

    /// Sends a tiny RRQ to every address until each one answers (any TFTP
    /// packet counts, typically ERROR 1 for the probe name).
    fn wait_ready(&mut self, listen: &[SocketAddr]) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for &addr in listen {
            loop {
                if let Some(status) = self.child.try_wait().expect("try_wait") {
                    return Err(format!("server exited during start-up: {status}"));
                }
                if probe(addr) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("no TFTP answer on {addr} within {READY_TIMEOUT:?}"));
                }
            }
        }
        Ok(())
    }

    /// Panics (with the log) if the server has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "server died ({status})\n--- server log ---\n{}",
                self.log_tail()
            );
        }
    }

    /// SIGTERM, then asserts it exits within [`STOP_TIMEOUT`].
    pub fn stop(mut self) -> ExitStatus {
        self.assert_alive();
        match self.terminate() {
            Some(status) => status,
            None => panic!(
                "server ignored SIGTERM for {STOP_TIMEOUT:?}\n{}",
                self.log_tail()
            ),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM to our child only, without waiting for it.
    pub fn signal_term(&self) {
        // SAFETY: kill(2) on the PID of a child we spawned and still own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    /// Sends SIGTERM to our child only and waits; SIGKILLs it on timeout.
    /// Returns the exit status if it stopped on SIGTERM.
    fn terminate(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status); // already reaped: its PID may be reused, don't signal it
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill(); // SIGKILL, same PID
        let _ = self.child.wait();
        None
    }

    /// The last 8 KiB of the server's stdout/stderr.
    pub fn log_tail(&self) -> String {
        file_tail(&self.log)
    }
}

/// The last 8 KiB of a log file, as text (empty when unreadable).
pub fn file_tail(path: &Path) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut start = text.len().saturating_sub(8192);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

impl Drop for Server {
    fn drop(&mut self) {
        let stopped = self.terminate().is_some();
        if std::thread::panicking() || !stopped {
            eprintln!(
                "--- server log ({}){} ---\n{}",
                self.log.display(),
                if stopped { "" } else { " [had to SIGKILL]" },
                self.log_tail()
            );
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port that is free on 127.0.0.1 (and on ::1 too if `ipv6`).
pub fn free_udp_port(ipv6: bool) -> u16 {
    for _ in 0..100 {
        let v4 = UdpSocket::bind((LOCALHOST_V4, 0)).expect("bind 127.0.0.1:0");
        let port = v4.local_addr().unwrap().port();
        if !ipv6 || UdpSocket::bind((LOCALHOST_V6, port)).is_ok() {
            return port;
        }
    }
    panic!("no UDP port free on both 127.0.0.1 and ::1");
}

/// Two different free UDP ports of 127.0.0.1: a proxyDHCP server's DHCP
/// port and its boot server (4011) port, for `--dhcp-port`/`--pxe-port`.
pub fn free_proxy_ports() -> (u16, u16) {
    let dhcp = free_udp_port(false);
    loop {
        let pxe = free_udp_port(false);
        if pxe != dhcp {
            return (dhcp, pxe);
        }
    }
}

/// One readiness probe: RRQ for a file that does not exist, wait briefly
/// for any TFTP packet in reply.
fn probe(addr: SocketAddr) -> bool {
    let sock = match UdpSocket::bind(SocketAddr::new(addr.ip(), 0)) {
        Ok(s) => s,
        Err(_) => return false,
    };
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    if sock
        .send_to(&rrq("rackboot-readiness-probe", &[]), addr)
        .is_err()
    {
        std::thread::sleep(Duration::from_millis(100));
        return false;
    }
    let mut buf = [0u8; 2048];
    match sock.recv_from(&mut buf) {
        Ok((n, from)) if n >= 2 && (1..=6).contains(&buf[1]) && buf[0] == 0 => {
            if buf[1] != 5 {
                // The server started a transfer: abort it politely.
                let _ = sock.send_to(&error_packet(0, "probe done"), from);
            }
            true
        }
        // ECONNREFUSED (ICMP port unreachable): not bound yet.
        _ => {
            std::thread::sleep(Duration::from_millis(50));
            false
        }
    }
}

// ---------------------------------------------------------------------------
// Raw TFTP packets (for probes and tests that need no real client)
// ---------------------------------------------------------------------------

/// An octet-mode RRQ with the given `(option, value)` pairs.
pub fn rrq(file: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut p = vec![0, 1];
    for s in [file, "octet"]
        .into_iter()
        .chain(options.iter().flat_map(|(k, v)| [*k, *v]))
    {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    p
}

pub fn error_packet(code: u16, msg: &str) -> Vec<u8> {
    let mut p = vec![0, 5];
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(msg.as_bytes());
    p.push(0);
    p
}

/// A readable one-line rendering of a TFTP packet, for failure messages.
pub fn packet_summary(p: &[u8]) -> String {
    let text = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .replace('\0', " ")
            .trim_end()
            .to_string()
    };
    match p {
        [0, 3, hi, lo, data @ ..] => format!(
            "DATA block {} ({} bytes)",
            u16::from_be_bytes([*hi, *lo]),
            data.len()
        ),
        [0, 4, hi, lo, ..] => format!("ACK block {}", u16::from_be_bytes([*hi, *lo])),
        [0, 5, hi, lo, msg @ ..] => {
            format!("ERROR {} {:?}", u16::from_be_bytes([*hi, *lo]), text(msg))
        }
        [0, 6, opts @ ..] => format!("OACK {:?}", text(opts)),
        _ => format!("{} bytes {:02x?}", p.len(), &p[..p.len().min(32)]),
    }
}

/// Sends `packet` to `addr` and returns the first reply (with its source),
/// or `None` after `wait`.
pub fn exchange(addr: SocketAddr, packet: &[u8], wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let sock = UdpSocket::bind(SocketAddr::new(addr.ip(), 0)).expect("bind client socket");
    sock.set_read_timeout(Some(wait)).unwrap();
    sock.send_to(packet, addr).expect("send");
    let mut buf = vec![0u8; 65536];
    let (n, from) = sock.recv_from(&mut buf).ok()?;
    buf.truncate(n);
    Some((buf, from))
}

// ---------------------------------------------------------------------------
// Test files
// ---------------------------------------------------------------------------

/// A file served in the tests, with content derived from its name.
#[derive(Clone, Copy, Debug)]
pub struct TestFile {
    pub name: &'static str,
    pub size: u64,
}

/// 512 * 367: the least common multiple of blksize 512 and 1468.
pub const LCM_512_1468: u64 = 187_904;

pub const EMPTY: TestFile = TestFile {
    name: "empty.bin",
    size: 0,
};
/// Less than one block at any block size used.
pub const SMALL: TestFile = TestFile {
    name: "small.bin",
    size: 300,
};
/// 1,503,232 bytes: exactly 2936 blocks of 512 and 1024 blocks of 1468
/// (= 64 windows of 16), so the transfer must end with an empty DATA.
pub const MULTIPLE: TestFile = TestFile {
    name: "multiple.bin",
    size: 8 * LCM_512_1468,
};
/// Over 32 MiB: 65,540 blocks of 512, so the block number wraps 65535 -> 0.
pub const LARGE: TestFile = TestFile {
    name: "large.bin",
    size: 32 * 1024 * 1024 + 3 * 512 + 77,
};

pub const ALL_FILES: [TestFile; 4] = [EMPTY, SMALL, MULTIPLE, LARGE];

/// A scratch directory laid out as:
/// `root/` (served), `outside/secret.txt` (must never be served), `dl/`
/// (client downloads) and the server logs.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

pub const SECRET: &[u8] = b"rackboot-test: this file lives outside the TFTP root\n";

impl Fixture {
    pub fn new(files: &[TestFile]) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("rackboot-it-")
            .tempdir()
            .expect("tempdir");
        let f = Fixture { dir };
        for d in [f.root(), f.outside(), f.downloads()] {
            fs::create_dir_all(&d).unwrap();
        }
        // World-readable so a privilege-dropping stand-in can serve it.
        for d in [f.dir.path().to_path_buf(), f.root()] {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        for file in files {
            write_pattern_file(&f.root().join(file.name), file.size, file.name);
        }
        fs::write(f.outside().join("secret.txt"), SECRET).unwrap();
        f
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }

    pub fn downloads(&self) -> PathBuf {
        self.dir.path().join("dl")
    }

    /// A fresh (nonexistent) download path.
    pub fn download_path(&self, label: &str) -> PathBuf {
        let p = self.downloads().join(label);
        let _ = fs::remove_file(&p);
        p
    }
}

/// Deterministic pseudo-random bytes (splitmix64 seeded from `seed`).
pub fn pattern_bytes(seed: &str, len: usize) -> Vec<u8> {
    let mut state = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write_pattern_file(path: &Path, size: u64, seed: &str) {
    let mut w = BufWriter::new(File::create(path).expect("create test file"));
    w.write_all(&pattern_bytes(seed, size as usize)).unwrap();
    w.flush().unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

/// SHA-256 of a file, as lowercase hex (via coreutils `sha256sum`).
pub fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum (coreutils)");
    assert!(
        out.status.success(),
        "sha256sum {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Checks that `got` has the same SHA-256 as `want`; on mismatch describes
/// the sizes and the first differing byte.
pub fn verify_same(want: &Path, got: &Path) -> Result<(), String> {
    if !got.exists() {
        return Err(format!("{} was not created", got.display()));
    }
    let (hw, hg) = (sha256_file(want), sha256_file(got));
    if hw == hg {
        return Ok(());
    }
    let (a, b) = (read_all(want), read_all(got));
    let first_diff = a
        .iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    Err(format!(
        "content mismatch: expected {} bytes sha256 {hw}, got {} bytes sha256 {hg}; first difference at byte {first_diff} (block {} at blksize 512)",
        a.len(),
        b.len(),
        first_diff / 512 + 1
    ))
}

fn read_all(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(p)
        .and_then(|mut f| f.read_to_end(&mut v))
        .expect("read file");
    v
}

// ---------------------------------------------------------------------------
// External programs
// ---------------------------------------------------------------------------

/// Panics (never skips) if `program` is not on PATH.
/// Binding ports 67 and 68 (a relay's or a client's DHCP port) needs
/// privileges: root (CI runs the tests as root) or a lowered
/// ip_unprivileged_port_start.
pub fn require_low_ports() {
    let unprivileged_from = fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or(1024);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root || unprivileged_from <= 67,
        "this test receives OFFERs on port 67 or 68 and must run as root (CI does)"
    );
}

pub fn require_program(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "required program `{program}` is not installed (run .ci/install.sh as root)"
    );
}

/// What a finished client invocation did.
#[derive(Debug)]
pub struct Outcome {
    pub cmdline: String,
    /// Exit code; `None` if killed by a signal.
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Everything worth printing when an assertion about this run fails.
    pub fn describe(&self) -> String {
        const MAX: usize = 4096;
        let clip = |s: &str| {
            if s.len() <= MAX {
                s.to_string()
            } else {
                let mut i = s.len() - MAX;
                while !s.is_char_boundary(i) {
                    i += 1;
                }
                format!("[...]{}", &s[i..])
            }
        };
        format!(
            "`{}` -> exit {:?}{} after {:.2?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            self.code,
            if self.timed_out { " (TIMED OUT)" } else { "" },
            self.elapsed,
            clip(&self.stdout),
            clip(&self.stderr)
        )
    }
}

/// Runs `program args...` under coreutils `timeout` (SIGTERM at `limit`,
/// SIGKILL 5 s later) and collects its output.
pub fn run_with_timeout(program: &str, args: &[String], cwd: &Path, limit: Duration) -> Outcome {
    require_program(program);
    let cmdline = std::iter::once(program.to_string())
        .chain(args.iter().map(|a| {
            if a.contains(' ') {
                format!("\"{a}\"")
            } else {
                a.clone()
            }
        }))
        .collect::<Vec<_>>()
        .join(" ");
    let start = Instant::now();
    let out = Command::new("timeout")
        .args(["--kill-after=5", &format!("{}", limit.as_secs().max(1))])
        .arg(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `timeout {cmdline}`: {e}"));
    let code = out.status.code();
    Outcome {
        cmdline,
        code,
        // timeout(1): 124 = timed out, 137 = needed SIGKILL.
        timed_out: matches!(code, Some(124) | Some(137)),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

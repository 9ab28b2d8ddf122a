//! The ways rackboot is deployed (dist/): one static binary, the systemd
//! unit, the container image and the Kubernetes manifests.
//!
//! - the release binary is statically linked (its size is printed), and a
//!   user lookup that misses fails with a message instead of crashing (a
//!   static glibc must not load NSS modules);
//! - `READY=1`, `WATCHDOG=1` and `STOPPING=1` reach a notify socket as
//!   systemd would receive them;
//! - `systemd-analyze verify` accepts dist/systemd/rackboot.service, its
//!   `systemd-analyze security` exposure stays "OK", and every system call
//!   rackboot makes while serving TFTP and HTTP (both backends, traced with
//!   strace) is allowed by the unit's SystemCallFilter;
//! - dist/Containerfile builds an image `FROM scratch` with podman, which
//!   runs under podman's default seccomp profile in a network namespace
//!   made here: rackboot says in one line that it falls back to epoll,
//!   curl fetches a file over TFTP byte for byte, and the container's
//!   process runs as 65534 with only CAP_LEASE;
//! - dist/kubernetes/ validates against the Kubernetes OpenAPI schemas
//!   (kubernetes-validate), names only flags rackboot has, and its memory
//!   request covers rackboot's measured idle footprint.
//!
//! Every tool missing fails the test with its name (.ci/install.sh
//! installs them); nothing skips. Traffic goes to loopback only, or into a
//! network namespace this test creates.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const RACKBOOT: &str = env!("CARGO_BIN_EXE_rackboot");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// CAP_LEASE (capability.h): the one capability kept after the drop.
const CAP_LEASE: u64 = 1 << 28;

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e} (bash .ci/install.sh installs it)"))
}

/// Runs `cmd`, fails the test with its output unless it succeeds.
fn run_ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Bytes that differ at every offset (a file served wrong shows).
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).rotate_right(13) as u8)
        .collect()
}

/// A directory anyone may read (the server drops to 65534 before serving).
fn readable_root(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    for (name, body) in files {
        let path = dir.path().join(name);
        fs::write(&path, body).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }
    dir
}

/// A rackboot started by this test, stopped (by its PID) when dropped.
struct Running {
    child: Child,
    /// Where signals go: the child, or (under strace) the traced rackboot.
    pid: libc::pid_t,
    log: PathBuf,
}

impl Running {
    fn start(args: &[&str], env: &[(&str, &str)], log: &Path) -> Running {
        Running::start_with(Command::new(RACKBOOT), args, env, log)
    }

    fn start_with(mut cmd: Command, args: &[&str], env: &[(&str, &str)], log: &Path) -> Running {
        let out = fs::File::create(log).unwrap();
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd.spawn().expect("start rackboot");
        Running {
            pid: child.id() as libc::pid_t,
            child,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log says "serving" (or fails with the log).
    fn wait_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.log().contains("serving") {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("rackboot exited ({status}) before serving:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "rackboot not serving after 15 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the PID of the rackboot this test started.
        unsafe { libc::kill(self.pid, sig) };
    }

    /// SIGTERM, then the exit status (SIGKILL after 20 s).
    fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("rackboot ignored SIGTERM for 20 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- rackboot log ---\n{}", self.log());
        }
    }
}

/// `--user NAME` for a user that does not exist: the static binary reads
/// /etc/passwd itself and must say so, not crash in glibc's NSS loader.
#[test]
fn release_binary_is_static() {
    let file = run_ok(Command::new("file").arg("-L").arg(RACKBOOT));
    let ldd = run(Command::new("ldd").arg(RACKBOOT));
    let ldd_text = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    let is_static = file.contains("statically linked")
        || file.contains("static-pie linked")
        || ldd_text.contains("not a dynamic executable")
        || ldd_text.contains("statically linked");
    assert!(
        is_static,
        "{RACKBOOT} is not static (.cargo/config.toml's rustc wrapper should link it with \
         crt-static; a RUSTC_WRAPPER in the environment replaces it):\nfile: {file}ldd: {ldd_text}"
    );
    let size = fs::metadata(RACKBOOT).unwrap().len();
    let dir = tempfile::tempdir().unwrap();
    let stripped = dir.path().join("rackboot");
    run_ok(Command::new("strip").arg("-o").arg(&stripped).arg(RACKBOOT));
    let stripped_size = fs::metadata(&stripped).unwrap().len();
    eprintln!(
        "rackboot: {} ({:.1} MiB with debug info, {:.1} MiB stripped)",
        file.trim(),
        size as f64 / 1048576.0,
        stripped_size as f64 / 1048576.0
    );
    // The stripped binary runs on its own.
    let version = run_ok(Command::new(&stripped).arg("--version"));
    assert!(version.starts_with("rackboot "), "{version}");

    // A user missing from /etc/passwd: a clear error, exit status 1.
    let root = readable_root(&[("a", b"a")]);
    let port = free_udp_port().to_string();
    let out = run(Command::new(RACKBOOT).args([
        "--root",
        &root.path().display().to_string(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--user",
        "rackboot-test-no-such-user",
    ]));
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "--user for a missing user must fail cleanly, not crash ({}):\n{text}",
        out.status
    );
    assert!(text.contains("no such user"), "{text}");
}

/// READY=1 once serving, WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1
/// at SIGTERM, as systemd's notify socket receives them.
#[test]
fn systemd_notifications() {
    let dir = tempfile::tempdir().unwrap();
    // The server drops to 65534 before it notifies: the socket must be
    // reachable by anyone, as /run/systemd/notify is.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    fs::set_permissions(&socket_path, fs::Permissions::from_mode(0o777)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let root = readable_root(&[("a", b"a")]);
    let listen = format!("127.0.0.1:{}", free_udp_port());
    let mut server = Running::start(
        &[
            "--root",
            &root.path().display().to_string(),
            "--listen",
            &listen,
        ],
        &[
            ("NOTIFY_SOCKET", &socket_path.display().to_string()),
            ("WATCHDOG_USEC", "2000000"),
        ],
        &dir.path().join("log"),
    );
    let mut got: Vec<(Instant, String)> = Vec::new();
    let recv_until = |got: &mut Vec<(Instant, String)>, want: &str, within: Duration| {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let mut buf = [0u8; 4096];
            if let Ok(n) = socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                got.push((Instant::now(), msg.clone()));
                if msg.lines().any(|l| l == want) {
                    return;
                }
            }
        }
        panic!("no {want} within {within:?}; got {got:?}");
    };
    recv_until(&mut got, "READY=1", Duration::from_secs(15));
    assert!(
        server.log().contains("serving"),
        "READY=1 before serving:\n{}",
        server.log()
    );
    assert!(
        got.last()
            .unwrap()
            .1
            .lines()
            .any(|l| l.starts_with("STATUS=")),
        "READY=1 without STATUS=: {got:?}"
    );
    // Half of 2 s: a ping at once, then about every second; in 3.5 s
    // about four (pinging every 2 s would make two, every wake-up 17).
    let ready_at = got.last().unwrap().0;
    let watch_until = ready_at + Duration::from_millis(3500);
    let mut pings = 0;
    while Instant::now() < watch_until {
        let mut buf = [0u8; 4096];
        if let Ok(n) = socket.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if Instant::now() < watch_until && msg == "WATCHDOG=1\n" {
                pings += 1;
            }
            got.push((Instant::now(), msg));
        }
    }
    assert!(
        (3..=6).contains(&pings),
        "{pings} watchdog pings in 3.5 s: {got:?}"
    );
    server.signal(libc::SIGTERM);
    recv_until(&mut got, "STOPPING=1", Duration::from_secs(10));
    let status = server.stop();
    assert!(status.success(), "{status}:\n{}", server.log());
    eprintln!(
        "notifications: {:?}",
        got.iter().map(|(_, m)| m).collect::<Vec<_>>()
    );
}

fn unit_text() -> String {
    fs::read_to_string(Path::new(REPO).join("dist/systemd/rackboot.service")).unwrap()
}

/// The unit, with ExecStart pointing at the built binary (verify checks
/// that the program exists).
fn unit_copy(dir: &Path) -> PathBuf {
    let text = unit_text().replace(
        "ExecStart=/usr/local/bin/rackboot",
        &format!("ExecStart={RACKBOOT}"),
    );
    assert!(
        text.contains(&format!("ExecStart={RACKBOOT} ")),
        "ExecStart= moved:\n{text}"
    );
    let path = dir.join("rackboot.service");
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn systemd_unit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(dir.path());
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&unit));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify ({}):\n{text}",
        out.status
    );
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "systemd-analyze security printed no exposure ({}):\n{text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("{}", overall.trim());
    let level: f64 = overall
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure in {overall:?}"));
    assert!(level <= 3.0, "exposure {level} (was 2.2):\n{text}");
    for key in [
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_LEASE CAP_SETUID CAP_SETGID",
        "RuntimeDirectory=rackboot",
    ] {
        assert!(unit_text().contains(key), "the unit lacks {key}");
    }
}

/// The system calls the unit's SystemCallFilter= allows, expanded by
/// systemd-analyze (groups within groups).
fn allowed_syscalls() -> std::collections::BTreeSet<String> {
    fn expand(item: &str, out: &mut std::collections::BTreeSet<String>) {
        if let Some(group) = item.strip_prefix('@') {
            let text = run_ok(
                Command::new("systemd-analyze").args(["syscall-filter", &format!("@{group}")]),
            );
            for line in text.lines().skip(1) {
                let line = line.trim();
                if !line.is_empty() && !line.starts_with('#') {
                    expand(line, out);
                }
            }
        } else {
            out.insert(item.to_string());
        }
    }
    let (mut allowed, mut denied) = (Default::default(), Default::default());
    for line in unit_text().lines() {
        let Some(list) = line.strip_prefix("SystemCallFilter=") else {
            continue;
        };
        match list.strip_prefix('~') {
            Some(deny) => deny.split_whitespace().for_each(|i| expand(i, &mut denied)),
            None => list
                .split_whitespace()
                .for_each(|i| expand(i, &mut allowed)),
        }
    }
    allowed.difference(&denied).cloned().collect()
}

/// What systemd would refuse, found without systemd: rackboot serves TFTP
/// and HTTP on both backends under strace, and every system call it made
/// must be in the unit's filter.
#[test]
fn systemd_syscall_filter_allows_rackboot() {
    let allowed = allowed_syscalls();
    for must in [
        "io_uring_setup",
        "io_uring_enter",
        "landlock_restrict_self",
        "setuid",
        "capset",
    ] {
        assert!(allowed.contains(must), "SystemCallFilter= refuses {must}");
    }
    let body = pattern(300_001);
    let root = readable_root(&[("f.bin", &body)]);
    let dir = tempfile::tempdir().unwrap();
    let mut used = std::collections::BTreeSet::new();
    let mut families = std::collections::BTreeSet::new();
    for io in ["uring", "epoll"] {
        let trace = dir.path().join(format!("strace-{io}"));
        let tftp = format!("127.0.0.1:{}", free_udp_port());
        let http = format!("127.0.0.1:{}", free_tcp_port());
        let mut strace = Command::new("strace");
        strace.args(["-f", "-qq", "-o"]).arg(&trace).arg(RACKBOOT);
        let mut server = Running::start_with(
            strace,
            &[
                "--root",
                &root.path().display().to_string(),
                "--listen",
                &tftp,
                "--http-listen",
                &http,
                "--io",
                io,
                // proxyDHCP too (its sockets and the netlink watcher), on
                // free ports; nothing is sent to it.
                "--boot",
                "bios=f.bin",
                "--dhcp-port",
                &free_udp_port().to_string(),
                "--pxe-port",
                &free_udp_port().to_string(),
            ],
            &[],
            &dir.path().join(format!("log-{io}")),
        );
        server.wait_serving();
        // Signals go to rackboot, strace's child (strace follows its exit).
        let children =
            fs::read_to_string(format!("/proc/{0}/task/{0}/children", server.child.id())).unwrap();
        server.pid = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("strace's child");
        for url in [
            format!("tftp://{tftp}/f.bin"),
            format!("http://{http}/f.bin"),
        ] {
            let got = dir.path().join("got");
            run_ok(
                Command::new("curl")
                    .args(["-sS", "--max-time", "20", "-o"])
                    .arg(&got)
                    .arg(&url),
            );
            assert!(fs::read(&got).unwrap() == body, "{url}: bytes differ");
        }
        server.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(300));
        let status = server.stop();
        assert!(status.success(), "{io}: {status}:\n{}", server.log());
        assert!(server.log().contains("stopped"), "{io}:\n{}", server.log());
        for line in fs::read_to_string(&trace).unwrap().lines() {
            // "PID name(args...) = result", or "PID <... name resumed>".
            let rest = line.split_once(' ').map_or("", |(_, r)| r).trim_start();
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && rest[name.len()..].starts_with('(') {
                if name == "socket" {
                    let family = rest["socket(".len()..].split(',').next().unwrap_or("");
                    families.insert(family.to_string());
                }
                used.insert(name);
            }
        }
    }
    assert!(
        used.contains("setuid") || used.contains("setresuid"),
        "no privilege drop traced: {used:?}"
    );
    let refused: Vec<_> = used
        .iter()
        .filter(|s| !allowed.contains(*s) && *s != "execve")
        .collect();
    assert!(
        refused.is_empty(),
        "rackboot made system calls dist/systemd/rackboot.service's SystemCallFilter= refuses: {refused:?}"
    );
    let unit = unit_text();
    let restricted = unit
        .lines()
        .find_map(|l| l.strip_prefix("RestrictAddressFamilies="))
        .expect("the unit restricts address families");
    let refused: Vec<_> = families
        .iter()
        .filter(|f| !restricted.split_whitespace().any(|r| r == f.as_str()))
        .collect();
    assert!(
        refused.is_empty(),
        "rackboot opened sockets of families the unit's RestrictAddressFamilies= refuses: {refused:?}"
    );
    eprintln!(
        "{} distinct system calls traced, all allowed by the unit; socket families {families:?}",
        used.len()
    );
}

/// Names and cleans up what one podman test makes: an image, a container
/// and a network namespace, each named for this process.
struct Podman {
    tag: String,
    container: String,
    netns: String,
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.container])
            .output();
        let _ = Command::new("podman")
            .args(["rmi", "-f", &self.tag])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

/// The capability masks and ids of a process, from /proc/PID/status.
fn status_fields(pid: &str) -> (String, String, u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
    };
    let mask = |key: &str| u64::from_str_radix(&field(key), 16).unwrap();
    (
        field("Uid:"),
        field("Gid:"),
        mask("CapEff:"),
        mask("CapPrm:"),
    )
}

#[test]
fn container_serves_with_epoll_fallback() {
    let started = Instant::now();
    let id = std::process::id();
    let podman = Podman {
        tag: format!("localhost/rackboot-test:{id}"),
        container: format!("rackboot-test-{id}"),
        netns: format!("rackboot-test-{id}"),
    };
    // The build context: the stripped static binary, nothing else.
    let context = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("strip")
            .arg("-o")
            .arg(context.path().join("rackboot"))
            .arg(RACKBOOT),
    );
    run_ok(
        Command::new("podman")
            .args(["build", "--quiet", "--pull=never", "-f"])
            .arg(Path::new(REPO).join("dist/Containerfile"))
            .args(["-t", &podman.tag])
            .arg(context.path()),
    );
    // A network namespace of its own, loopback only: nothing leaves it.
    run_ok(Command::new("ip").args(["netns", "add", &podman.netns]));
    run_ok(Command::new("ip").args(["-n", &podman.netns, "link", "set", "lo", "up"]));
    let body = pattern(1_000_003);
    let root = readable_root(&[("boot.bin", &body)]);
    // runc (crun refuses hybrid cgroup hierarchies), ulimits within the
    // machine's hard limits, podman's default seccomp profile, the
    // DaemonSet's capabilities, the image's own command
    // (`--root /srv/tftp --single-port`, port 69).
    let run_out = run(Command::new("podman")
        .args([
            "--runtime",
            "runc",
            "run",
            "-d",
            "--name",
            &podman.container,
        ])
        .arg(format!("--network=ns:/run/netns/{}", podman.netns))
        .args([
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=4096:4096",
        ])
        .args([
            "--cap-drop",
            "all",
            "--cap-add",
            "NET_BIND_SERVICE,LEASE,SETUID,SETGID",
        ])
        .arg("-v")
        .arg(format!("{}:/srv/tftp:ro", root.path().display()))
        .arg(&podman.tag));
    assert!(
        run_out.status.success(),
        "podman cannot run a container on this machine ({}): {}{}",
        run_out.status,
        String::from_utf8_lossy(&run_out.stdout),
        String::from_utf8_lossy(&run_out.stderr)
    );
    let logs = || {
        let out = run(Command::new("podman").args(["logs", &podman.container]));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logs().contains("serving") {
        let state = run_ok(Command::new("podman").args([
            "inspect",
            "-f",
            "{{.State.Status}}",
            &podman.container,
        ]));
        assert!(
            state.trim() == "running",
            "the container stopped ({}):\n{}",
            state.trim(),
            logs()
        );
        assert!(
            Instant::now() < deadline,
            "not serving after 20 s:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = logs();
    let fallback: Vec<_> = text.lines().filter(|l| l.contains("io_uring")).collect();
    assert!(
        fallback.len() == 1
            && fallback[0].contains("io_uring unavailable")
            && fallback[0].contains("using the epoll backend"),
        "expected one line saying io_uring is unavailable and epoll is used:\n{text}"
    );
    assert!(text.contains("Epoll backend"), "{text}");

    // A real client, inside the namespace.
    let downloads = tempfile::tempdir().unwrap();
    let got = downloads.path().join("boot.bin");
    let out = run(Command::new("ip")
        .args([
            "netns",
            "exec",
            &podman.netns,
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-o",
        ])
        .arg(&got)
        .arg("tftp://127.0.0.1/boot.bin"));
    assert!(
        out.status.success(),
        "curl tftp:// failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    assert!(
        fs::read(&got).unwrap() == body,
        "curl got different bytes:\n{}",
        logs()
    );

    // The container's process, seen from the host: every thread dropped
    // to 65534, only CAP_LEASE left.
    let pid =
        run_ok(Command::new("podman").args(["inspect", "-f", "{{.State.Pid}}", &podman.container]));
    let pid = pid.trim();
    let (uid, gid, eff, prm) = status_fields(pid);
    eprintln!(
        "container process {pid}: Uid {uid}, Gid {gid}, CapEff {eff:016x}, CapPrm {prm:016x}"
    );
    let mut tasks = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().file_name().into_string().unwrap();
        let (uid, gid, eff, prm) = status_fields(&format!("{pid}/task/{task}"));
        assert!(
            uid.split_whitespace().all(|u| u == "65534")
                && gid.split_whitespace().all(|g| g == "65534"),
            "thread {task} runs as Uid {uid} Gid {gid}, not 65534:\n{}",
            logs()
        );
        assert!(
            eff == CAP_LEASE && prm == CAP_LEASE,
            "thread {task}: CapEff {eff:x} CapPrm {prm:x}, want only CAP_LEASE"
        );
        tasks += 1;
    }
    assert!(tasks > 1, "one thread only: no shards?");
    let elapsed = started.elapsed();
    eprintln!("container test: {elapsed:.1?}");
    assert!(
        elapsed < Duration::from_secs(60),
        "the container test took {elapsed:.1?}"
    );
}

fn kubernetes_validate() -> PathBuf {
    for candidate in [
        "kubernetes-validate",
        "/usr/local/share/rackboot-test/venv/bin/kubernetes-validate",
    ] {
        if Command::new(candidate)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return PathBuf::from(candidate);
        }
    }
    panic!("kubernetes-validate missing (bash .ci/install.sh installs it from PyPI)");
}

#[test]
fn kubernetes_manifests_validate() {
    let dir = Path::new(REPO).join("dist/kubernetes");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let out = run_ok(
        Command::new(kubernetes_validate())
            .arg("--strict")
            .args(&files),
    );
    eprint!("{out}");

    // Every flag the DaemonSet passes is one rackboot has.
    let daemonset = fs::read_to_string(dir.join("daemonset.yaml")).unwrap();
    let help = run_ok(Command::new(RACKBOOT).arg("--help"));
    let mut flags = 0;
    for line in daemonset.lines() {
        let Some(arg) = line.trim().strip_prefix("- --") else {
            continue;
        };
        let flag = arg.split('=').next().unwrap();
        assert!(
            help.contains(&format!("--{flag}")),
            "daemonset.yaml passes --{flag}, which rackboot lacks"
        );
        flags += 1;
    }
    assert!(flags >= 4, "no args found in daemonset.yaml");
    for needed in [
        "hostNetwork: true",
        "--single-port",
        "--hosts-dir=/etc/rackboot/hosts.d",
        "LEASE",
        "drop: [\"ALL\"]",
        "path: /metrics",
    ] {
        assert!(daemonset.contains(needed), "daemonset.yaml lacks {needed}");
    }

    // The memory request covers rackboot's idle footprint with the
    // ConfigMap's shard count.
    let configmap = fs::read_to_string(dir.join("configmap.yaml")).unwrap();
    let shards = configmap
        .lines()
        .find_map(|l| l.trim().strip_prefix("shards = "))
        .expect("configmap.yaml sets shards");
    let request_mib: u64 = daemonset
        .split("requests:")
        .nth(1)
        .and_then(|r| r.lines().find_map(|l| l.trim().strip_prefix("memory: ")))
        .and_then(|m| m.trim().strip_suffix("Mi"))
        .and_then(|m| m.parse().ok())
        .expect("daemonset.yaml requests memory in Mi");
    let root = readable_root(&[("a", &pattern(4096))]);
    let log = tempfile::NamedTempFile::new().unwrap();
    let listen = format!("127.0.0.1:{}", free_udp_port());
    let http = format!("127.0.0.1:{}", free_tcp_port());
    let mut server = Running::start(
        &[
            "--root",
            &root.path().display().to_string(),
            "--listen",
            &listen,
            "--http-listen",
            &http,
            "--shards",
            shards,
        ],
        &[],
        log.path(),
    );
    server.wait_serving();
    std::thread::sleep(Duration::from_millis(500));
    let mut status = String::new();
    fs::File::open(format!("/proc/{}/status", server.child.id()))
        .unwrap()
        .read_to_string(&mut status)
        .unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!(
        "idle RSS with {shards} shards: {:.1} MiB (request {request_mib} Mi)",
        rss_kib as f64 / 1024.0
    );
    assert!(
        rss_kib / 1024 < request_mib,
        "idle RSS {rss_kib} KiB exceeds the DaemonSet's request {request_mib}Mi"
    );
    assert!(server.stop().success());
}

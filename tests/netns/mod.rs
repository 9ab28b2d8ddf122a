//! Network namespaces for tests that need a real link between the server and
//! its clients (with loss injected by nftables), instead of loopback.
//!
//! Safety rules, enforced here:
//! * every namespace is created by the test itself, with a name unique to
//!   this process (`rb<tag><pid>n<seq>`), and deleted by a `Drop` guard even
//!   when the test fails; deleting a namespace also removes its veth end and
//!   its nftables tables;
//! * the veth pair is created with both ends directly inside the test's
//!   namespaces, so the root namespace's interfaces and routes are never
//!   touched; addresses (a private /24 such as 10.213.x.0/24) exist only
//!   inside them;
//! * processes are started inside a namespace with `setns` in `pre_exec`
//!   (no `ip netns exec` wrapper), so the PID we hold is the program's own
//!   and it is stopped by that PID only.
//!
//! Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN): CI runs the tests as root.
#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Runs `program args...` to completion; panics with its output on failure.
pub fn run_checked(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Panics unless we can create network namespaces (root); the message says
/// why, instead of a confusing `ip` error later.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test creates network namespaces and must run as root (CI does)"
    );
}

/// One network namespace, deleted on drop.
pub struct Netns {
    name: String,
    /// `/run/netns/NAME`, kept open for `setns`.
    handle: File,
}

impl Netns {
    /// Creates `rb<tag><pid>n<seq>` with its loopback up.
    pub fn create(tag: &str) -> Netns {
        require_root();
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let name = format!("rb{tag}{}n{seq}", std::process::id());
        run_checked("ip", &["netns", "add", &name]);
        // From here on the guard owns the name: a panic below still deletes it.
        let handle = match File::open(Path::new("/run/netns").join(&name)) {
            Ok(f) => f,
            Err(e) => {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
                panic!("open /run/netns/{name}: {e}");
            }
        };
        let ns = Netns { name, handle };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NS args...`, checked.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run_checked("ip", &all);
    }

    /// Runs `program args...` inside the namespace and returns its output
    /// (unchecked).
    pub fn output(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.command(program);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", self.name));
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("wait")
    }

    /// Like `output`, panicking on failure.
    pub fn checked(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let out = self.output(program, args, stdin);
        assert!(
            out.status.success(),
            "{program} {args:?} in {} failed ({}): {}{}\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            stdin.unwrap_or("")
        );
        out
    }

    /// A command that runs inside this namespace (`setns` between fork and
    /// exec). Its PID is the program's own.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let fd = self.handle.as_raw_fd();
        let mut cmd = Command::new(program);
        // SAFETY: the closure runs in the forked child before exec and only
        // makes the async-signal-safe setns(2) system call on a descriptor
        // that stays open in the child until exec (O_CLOEXEC).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Moves the calling thread into this namespace. Only ever called on
    /// threads made for the purpose (see `spawn`): the namespace is
    /// per-thread, the rest of the process is unaffected.
    fn enter_this_thread(&self) {
        // SAFETY: plain setns(2) on a descriptor we own.
        let rc = unsafe { libc::setns(self.handle.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "setns into {}: {}",
            self.name,
            std::io::Error::last_os_error()
        );
    }

    /// Runs `f` on a new thread that lives in this namespace: sockets it
    /// creates belong to the namespace (and stay there when handed back).
    pub fn spawn<T: Send + 'static>(
        &self,
        name: String,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let handle = self.handle.try_clone().expect("dup netns handle");
        let ns_name = self.name.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                // SAFETY: as in enter_this_thread; this thread is ours.
                let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(
                    rc,
                    0,
                    "setns into {ns_name}: {}",
                    std::io::Error::last_os_error()
                );
                drop(handle);
                f()
            })
            .expect("spawn thread")
    }

    /// A UDP socket bound to `addr` inside this namespace.
    pub fn udp_bind(&self, addr: SocketAddr) -> UdpSocket {
        let handle = self.handle.try_clone().expect("dup netns handle");
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: plain setns(2) on a descriptor we own, on a scoped
                // thread that exits right after.
                let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                UdpSocket::bind(addr)
                    .unwrap_or_else(|e| panic!("bind {addr} in {}: {e}", self.name))
            })
            .join()
            .expect("bind thread")
        })
    }

    /// Installs (or replaces) random loss of `percent`% of the UDP packets
    /// crossing the given netfilter `hooks` of this namespace (`input`:
    /// packets it receives, `output`: packets it sends), each packet judged
    /// on its own (`numgen random`). Counters report what each hook saw and
    /// dropped (see `loss_counters`).
    ///
    /// Prefer `input`: a packet dropped by an `output` rule fails the
    /// sender's `sendto` with EPERM, which clients such as atftp treat as
    /// fatal, whereas real loss is silent. And mind what a hook sees: a
    /// UDP GSO send (rackboot sends a window as one) is a single packet to
    /// netfilter on both sides of a veth unless the sending device splits it
    /// (see `Link::new`), and would be dropped whole.
    pub fn set_udp_loss(&self, percent: u32, hooks: &[&str]) {
        assert!(percent <= 100);
        // `table X` + `delete table X` removes a previous table without
        // failing when there is none.
        let mut script =
            String::from("table inet rackboot_loss\ndelete table inet rackboot_loss\n");
        if percent > 0 {
            script.push_str("table inet rackboot_loss {\n");
            for hook in hooks {
                script.push_str(&format!(
                    "\tchain {hook} {{\n\
                     \t\ttype filter hook {hook} priority 0; policy accept;\n\
                     \t\tmeta l4proto udp counter\n\
                     \t\tmeta l4proto udp numgen random mod 100 < {percent} counter drop\n\
                     \t}}\n"
                ));
            }
            script.push_str("}\n");
        }
        self.checked("nft", &["-f", "-"], Some(&script));
    }

    /// `(udp packets seen, dropped)` at `hook` since the loss was set.
    pub fn loss_counters(&self, hook: &str) -> (u64, u64) {
        let out = self.output(
            "nft",
            &["list", "chain", "inet", "rackboot_loss", hook],
            None,
        );
        if !out.status.success() {
            return (0, 0);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let counts: Vec<u64> = text
            .lines()
            .filter_map(|l| {
                let rest = l.split("counter packets ").nth(1)?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .collect();
        (
            counts.first().copied().unwrap_or(0),
            counts.get(1).copied().unwrap_or(0),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let ok = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("warning: could not delete network namespace {}", self.name);
        }
    }
}

/// Two namespaces joined by a veth pair: `server` has `.1`, `client` `.2`
/// of `10.213.<subnet>.0/24`.
pub struct Link {
    // Field order is drop order: nothing here holds processes, so either
    // order works; namespaces go last in the tests' own structs.
    pub server: Netns,
    pub client: Netns,
    pub server_ip: IpAddr,
    pub client_ip: IpAddr,
    /// The server end's interface name (inside `server`).
    pub server_if: String,
}

impl Link {
    pub fn new(tag: &str, subnet: u8) -> Link {
        let server = Netns::create(&format!("{tag}s"));
        let client = Netns::create(&format!("{tag}c"));
        // Interface names: at most 15 bytes.
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let a = format!("rbv{}a{seq}", std::process::id());
        let b = format!("rbv{}b{seq}", std::process::id());
        assert!(a.len() <= 15, "interface name {a} too long");
        // Both ends are born inside the test's namespaces: the root namespace
        // never sees them.
        run_checked(
            "ip",
            &[
                "link",
                "add",
                &a,
                "netns",
                server.name(),
                "type",
                "veth",
                "peer",
                "name",
                &b,
                "netns",
                client.name(),
            ],
        );
        let server_ip: IpAddr = format!("10.213.{subnet}.1").parse().unwrap();
        let client_ip: IpAddr = format!("10.213.{subnet}.2").parse().unwrap();
        server.ip(&["addr", "add", &format!("{server_ip}/24"), "dev", &a]);
        client.ip(&["addr", "add", &format!("{client_ip}/24"), "dev", &b]);
        // `gso_max_segs 1`: a UDP GSO send (a whole window, for rackboot)
        // is split into datagrams as it leaves, as a NIC puts them on the
        // wire; otherwise veth hands the peer one packet per window and a
        // loss rule there would drop whole windows.
        server.ip(&["link", "set", &a, "gso_max_segs", "1"]);
        client.ip(&["link", "set", &b, "gso_max_segs", "1"]);
        server.ip(&["link", "set", &a, "up"]);
        client.ip(&["link", "set", &b, "up"]);
        Link {
            server,
            client,
            server_ip,
            client_ip,
            server_if: a,
        }
    }

    /// `percent`% loss each way: each namespace drops that share of the
    /// UDP datagrams it receives.
    pub fn set_udp_loss(&self, percent: u32) {
        self.server.set_udp_loss(percent, &["input"]);
        self.client.set_udp_loss(percent, &["input"]);
    }

    /// `((seen, dropped) client to server, (seen, dropped) server to client)`.
    pub fn loss_counters(&self) -> ((u64, u64), (u64, u64)) {
        (
            self.server.loss_counters("input"),
            self.client.loss_counters("input"),
        )
    }
}

/// A rackboot server running inside a namespace. Dropping it stops that
/// one PID (SIGTERM, then SIGKILL) and prints its log if the test failed.
pub struct NsServer {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl NsServer {
    /// Starts `rackboot --root ROOT --listen ADDR --io IO [extra]` in `ns`
    /// and waits until a probe from `probe_from` gets a TFTP answer.
    pub fn spawn(
        ns: &Netns,
        probe_from: &Netns,
        root: &Path,
        addr: SocketAddr,
        io: &str,
        extra: &[&str],
        log: PathBuf,
    ) -> NsServer {
        let log_file = File::create(&log).expect("create server log");
        let child = ns
            .command(env!("CARGO_BIN_EXE_rackboot"))
            .arg("--root")
            .arg(root)
            .args(["--listen", &addr.to_string(), "--io", io])
            .args(extra)
            // Not about privileges: the tests' roots are private to root.
            .args(["--user", "root"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file)
            .spawn()
            .expect("start rackboot in namespace");
        let mut server = NsServer { child, addr, log };
        let sock = probe_from.udp_bind(SocketAddr::new(
            if addr.is_ipv4() {
                IpAddr::from([0, 0, 0, 0])
            } else {
                IpAddr::from([0u16; 8])
            },
            0,
        ));
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut buf = [0u8; 2048];
        loop {
            if let Some(status) = server.child.try_wait().expect("try_wait") {
                panic!(
                    "rackboot exited during start-up ({status})\n--- log ---\n{}",
                    server.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "rackboot did not answer on {addr} within 15 s\n--- log ---\n{}",
                server.log_tail()
            );
            let _ = sock.send_to(&crate::common::rrq("rackboot-readiness-probe", &[]), addr);
            match sock.recv_from(&mut buf) {
                Ok((n, _)) if n >= 2 && buf[0] == 0 && (1..=6).contains(&buf[1]) => break,
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics (with the log) if the server has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("rackboot died ({status})\n--- log ---\n{}", self.log_tail());
        }
    }

    pub fn log_tail(&self) -> String {
        crate::common::file_tail(&self.log)
    }

    /// The whole log.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for NsServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own, not yet reaped child.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill(); // SIGKILL, same PID
                let _ = self.child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- rackboot log ({}) ---\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
    }
}

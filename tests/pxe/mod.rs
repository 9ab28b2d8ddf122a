//! Harness for tests/pxe_boot.rs: real firmware (SeaBIOS + iPXE ROM, OVMF,
//! AAVMF on ARM64) booting under QEMU through rackboot, each test in its
//! own network namespace.
//!
//! Topology of one test (nothing of it exists outside the namespace, so
//! no DHCP broadcast ever reaches a real network):
//!
//! ```text
//!  namespace rbpxe-<pid>-<n>-<tag>
//!  ┌──────────────────────────────────────────────────────────────┐
//!  │ br0 10.214.N.1/24, fd00:214:N::1/64                          │
//!  │  ├─ rackboot   --listen 10.214.N.1:69 --interface br0 ...    │
//!  │  ├─ dnsmasq    addresses only (10.214.N.50-99), no PXE/TFTP  │
//!  │  ├─ capture    passive AF_PACKET observer (UDP 67/68/69/4011)│
//!  │  └─ tap0 ── qemu-system-x86_64 -accel tcg (the firmware)     │
//!  │             (qemu-system-aarch64 -M virt for ARM64)          │
//!  └──────────────────────────────────────────────────────────────┘
//! ```
//!
//! dnsmasq also sends IPv6 router advertisements (no DHCPv6, no PXE):
//! without one, iPXE's `ifconf` waits about 15 s for IPv6 autoconfiguration
//! on every DHCP run.
//!
//! Development aids (never set in CI):
//! - `RACKBOOT_RECORD_FIXTURES=1`: store the firmware's DHCP requests under
//!   tests/fixtures/dhcp/recorded/ (`cargo test --test pxe_boot`; iPXE's
//!   port-4011 boot-item request only comes with `RACKBOOT_PXE_PROXY=dnsmasq`);
//! - `RACKBOOT_PXE_PROXY=dnsmasq`: the dnsmasq.conf test runs real dnsmasq
//!   with that file instead of rackboot, to check the test's expectations;
//! - `RACKBOOT_PXE_KEEP=1`: keep each test's directory (logs, serial output).
#![allow(dead_code)]

pub mod capture;
pub mod netns;
pub mod qemu;

use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use capture::Capture;
use netns::{BRIDGE, Netns, Proc};
use qemu::Machine;

pub const RACKBOOT: &str = env!("CARGO_BIN_EXE_rackboot");
/// rackboot's log filter: transfers, TFTP misses (`read refused`) and
/// proxy replies at info, proxy silences at debug.
const RACKBOOT_LOG: &str = "info,rackboot::reactor::shard=debug,rackboot::reactor::proxy=debug";
/// Longest wait for a VM to get to what a test looks for; a run takes
/// 5–30 s on an idle machine.
pub const BIOS_BOOT_TIMEOUT: Duration = Duration::from_secs(150);
pub const UEFI_BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// ARM64 is emulated instruction by instruction (TCG, no KVM possible).
pub const ARM64_BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// Longest wait for the VM lock held by another test (one VM at a time).
const LOCK_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const READY_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Requirements: missing tools fail the test, naming the package.
// ---------------------------------------------------------------------------

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the PXE boot tests create network namespaces, bridges and taps: run them as root"
    );
}

/// The program's path, from PATH or the sbin directories.
pub fn require_program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{name}` not found: install the Debian package {package} (see .ci/install.sh)");
}

pub fn require_file(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: install the Debian package {package} (see .ci/install.sh)"
    );
}

/// Copies firmware-side files into the TFTP root: (source, package).
pub fn install(root: &Path, files: &[(&str, &str)]) {
    for (source, package) in files {
        require_file(source, package);
        let name = Path::new(source).file_name().expect("file name");
        std::fs::copy(source, root.join(name)).unwrap_or_else(|e| panic!("{source}: {e}"));
    }
}

// ---------------------------------------------------------------------------
// One VM at a time, across tests and test processes.
// ---------------------------------------------------------------------------

pub struct VmLock {
    _file: File,
    _guard: MutexGuard<'static, ()>,
}

fn vm_lock() -> VmLock {
    static LOCK: Mutex<()> = Mutex::new(());
    let deadline = Instant::now() + LOCK_TIMEOUT;
    let guard = loop {
        match LOCK.try_lock() {
            Ok(guard) => break guard,
            Err(TryLockError::Poisoned(e)) => break e.into_inner(),
            Err(TryLockError::WouldBlock) => {}
        }
        assert!(
            Instant::now() < deadline,
            "another PXE test held the VM lock for {LOCK_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let path = std::env::temp_dir().join("rackboot-pxe-vm.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    loop {
        // SAFETY: flock on a descriptor we own; released when it closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "another process held {} for {LOCK_TIMEOUT:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    VmLock {
        _file: file,
        _guard: guard,
    }
}

// ---------------------------------------------------------------------------
// rackboot's log
// ---------------------------------------------------------------------------

/// The value of ` key=` in a tracing line: quoted, or up to whitespace.
pub fn field(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[at..];
    if let Some(quoted) = rest.strip_prefix('"') {
        Some(quoted[..quoted.find('"')?].to_owned())
    } else {
        Some(
            rest.split(char::is_whitespace)
                .next()
                .unwrap_or("")
                .to_owned(),
        )
    }
}

/// One TFTP read as rackboot logs it: a finished transfer
/// (`read ... outcome=Complete`) or a refused request (`read refused ...`,
/// outcome `refused`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TftpLine {
    pub file: String,
    pub outcome: String,
    pub client: Option<SocketAddrV4>,
}

pub fn tftp_lines(log: &str) -> Vec<TftpLine> {
    log.lines()
        .filter_map(|line| {
            let outcome = if line.contains(" read client=") {
                field(line, "outcome")?
            } else if line.contains(" read refused ") {
                "refused".to_owned()
            } else {
                return None;
            };
            Some(TftpLine {
                file: field(line, "file")?,
                outcome,
                client: field(line, "client").and_then(|c| c.parse().ok()),
            })
        })
        .collect()
}

/// One proxyDHCP reply as rackboot logs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyLine {
    pub arch: String,
    pub kind: String,
    pub file: String,
    pub to: String,
}

pub fn proxy_lines(log: &str) -> Vec<ProxyLine> {
    log.lines()
        .filter(|line| line.contains(" proxyDHCP mac="))
        .filter_map(|line| {
            Some(ProxyLine {
                arch: field(line, "arch")?,
                kind: field(line, "kind")?,
                file: field(line, "file")?,
                to: field(line, "to")?,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Text helpers
// ---------------------------------------------------------------------------

/// Serial output without ANSI/VT100 escape sequences.
pub fn strip_ansi(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            0x1b => {
                i += 1;
                match bytes.get(i) {
                    Some(b'[') => {
                        i += 1;
                        while i < bytes.len() && !(0x40..=0x7e).contains(&bytes[i]) {
                            i += 1;
                        }
                        i += 1;
                    }
                    Some(b'(' | b')' | b'%' | b'#') => i += 2,
                    Some(_) => i += 1,
                    None => {}
                }
            }
            // Shift out / shift in (line-drawing set).
            0x0e | 0x0f => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn contains_bytes(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

// ---------------------------------------------------------------------------
// Fixture recording
// ---------------------------------------------------------------------------

pub const RECORDED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dhcp/recorded");

pub fn recording() -> bool {
    std::env::var("RACKBOOT_RECORD_FIXTURES").is_ok_and(|v| v == "1")
}

/// Stores one firmware request as `recorded/<name>.bin` (only when
/// recording).
pub fn record(name: &str, payload: Option<&[u8]>) {
    if !recording() {
        return;
    }
    let Some(payload) = payload else {
        eprintln!("[pxe] RECORD: no packet for {name} in this run");
        return;
    };
    std::fs::create_dir_all(RECORDED_DIR).expect("create recorded fixtures dir");
    let path = Path::new(RECORDED_DIR).join(format!("{name}.bin"));
    std::fs::write(&path, payload).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    eprintln!("[pxe] RECORD: {} ({} bytes)", path.display(), payload.len());
}

// ---------------------------------------------------------------------------
// The scene
// ---------------------------------------------------------------------------

/// Which program answers PXE in a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    Rackboot,
    /// dnsmasq itself (development stand-in, `RACKBOOT_PXE_PROXY=dnsmasq`).
    Dnsmasq,
}

/// One test's namespace, processes and files. Fields drop in order: the
/// VM, the proxy, the DHCP server, the capture, the namespace, the files,
/// and last the VM lock.
pub struct Scene {
    vm: Option<Proc>,
    proxy: Option<Proc>,
    /// A live `rackboot doctor` on the bridge, when a test runs one.
    doctor: Option<Proc>,
    dhcp: Proc,
    pub capture: Capture,
    pub ns: Netns,
    dir: Option<tempfile::TempDir>,
    _lock: VmLock,
    pub test: String,
    pub root: PathBuf,
    vm_dir: PathBuf,
    machine: Option<Machine>,
    vm_started: Option<Instant>,
    vm_log: String,
    pub proxy_kind: ProxyKind,
}

impl Scene {
    /// Namespace `tag` with bridge subnet 10.214.`n`.0/24, the capture and
    /// the address-only DHCP server running; the TFTP root is empty.
    pub fn new(test: &str, n: u8) -> Scene {
        require_root();
        require_program("ip", "iproute2");
        assert!(
            Path::new("/dev/net/tun").exists(),
            "/dev/net/tun is missing: QEMU's tap needs it (modprobe tun; in a container, pass --device /dev/net/tun)"
        );
        let dnsmasq = require_program("dnsmasq", "dnsmasq");
        let lock = vm_lock();
        let dir = tempfile::Builder::new()
            .prefix(&format!("rackboot-pxe-{test}-"))
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("root dir");
        let vm_dir = dir.path().join("vm");
        let ns = Netns::create(&test.chars().take(12).collect::<String>(), n);
        let capture = Capture::start(&ns, BRIDGE);
        let dhcp = start_address_server(&ns, &dnsmasq, dir.path());
        Scene {
            vm: None,
            proxy: None,
            doctor: None,
            dhcp,
            capture,
            ns,
            dir: Some(dir),
            _lock: lock,
            test: test.to_owned(),
            root,
            vm_dir,
            machine: None,
            vm_started: None,
            vm_log: String::new(),
            proxy_kind: ProxyKind::Rackboot,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dir").path()
    }

    pub fn server(&self) -> Ipv4Addr {
        self.ns.server_addr()
    }

    /// rackboot on the bridge, serving `root`: `--root R --listen A:69
    /// --interface br0 --io epoll` then `args`.
    pub fn start_rackboot(&mut self, args: &[&str]) {
        let root = self.root.display().to_string();
        let mut all = vec!["--root", root.as_str()];
        all.extend_from_slice(args);
        self.start_rackboot_raw(&all);
    }

    /// rackboot with `--listen A:69 --interface br0 --io epoll` and `args`.
    pub fn start_rackboot_raw(&mut self, args: &[&str]) {
        let listen = format!("{}:69", self.server());
        let mut cmd = self.ns.command(RACKBOOT);
        cmd.args(["--listen", &listen, "--interface", BRIDGE, "--io", "epoll"])
            .args(args)
            // Not about privileges (tests/privileges.rs is); the sandbox is on.
            .args(["--user", "root"])
            .env("RUST_LOG", RACKBOOT_LOG);
        let log = self.dir().join("rackboot.log");
        let mut proc = self.ns.spawn("rackboot", cmd, &log);
        eprintln!("[pxe] {}", proc.cmdline);
        proc.wait_log(READY_TIMEOUT, |log| log.contains("proxyDHCP on ports"));
        self.proxy = Some(proc);
        self.proxy_kind = ProxyKind::Rackboot;
    }

    /// dnsmasq answering PXE and TFTP from `conf` (the stand-in).
    pub fn start_dnsmasq_proxy(&mut self, conf: &Path) {
        eprintln!("WARNING: RACKBOOT_PXE_PROXY=dnsmasq: testing dnsmasq, NOT rackboot");
        let dnsmasq = require_program("dnsmasq", "dnsmasq");
        let mut cmd = self.ns.command(dnsmasq.to_str().expect("path"));
        cmd.arg("--no-daemon")
            .arg(format!("--conf-file={}", conf.display()))
            .args([
                "--interface=br0",
                "--bind-interfaces",
                "--log-facility=-",
                "--user=root",
            ])
            .arg(format!(
                "--pid-file={}",
                self.dir().join("proxy-dnsmasq.pid").display()
            ));
        let log = self.dir().join("proxy-dnsmasq.log");
        let mut proc = self.ns.spawn("dnsmasq (PXE stand-in)", cmd, &log);
        proc.wait_log(READY_TIMEOUT, |log| log.contains("TFTP root is"));
        self.proxy = Some(proc);
        self.proxy_kind = ProxyKind::Dnsmasq;
    }

    pub fn proxy_log(&self) -> String {
        self.proxy.as_ref().map(Proc::log_text).unwrap_or_default()
    }

    /// Starts a live `rackboot doctor` on the bridge (before the VM), to be
    /// judged by [`Scene::doctor_verdicts`].
    pub fn start_doctor(&mut self) {
        let mut cmd = self.ns.command(RACKBOOT);
        cmd.args(["doctor", "--interface", BRIDGE]);
        let log = self.dir().join("doctor.log");
        let mut proc = self.ns.spawn("rackboot doctor", cmd, &log);
        proc.wait_log(READY_TIMEOUT, |log| log.contains("capturing on"));
        self.doctor = Some(proc);
    }

    /// Stops the live doctor (SIGTERM: it prints its verdicts and exits),
    /// writes the test's own capture of the bridge to a pcap file, and
    /// runs `rackboot doctor --pcap` on it: the two verdicts on the VM,
    /// (live, from the pcap).
    pub fn doctor_verdicts(&mut self) -> (String, String) {
        let mut live = self.doctor.take().expect("start_doctor first");
        live.stop();
        let mac = qemu::MAC;
        let pick = |text: &str| {
            text.lines()
                .filter(|l| l.starts_with(mac))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let live_text = live.log_text();
        let pcap = self.dir().join(format!("{}.pcap", self.test));
        self.capture.write_pcap(&pcap);
        let out = std::process::Command::new(RACKBOOT)
            .args(["doctor", "--pcap"])
            .arg(&pcap)
            .output()
            .expect("run rackboot doctor --pcap");
        let pcap_text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "doctor --pcap {}: {}\n{pcap_text}{}",
            pcap.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let (live_verdict, pcap_verdict) = (pick(&live_text), pick(&pcap_text));
        assert!(
            !live_verdict.is_empty(),
            "the live doctor said nothing about {mac}:\n{live_text}"
        );
        (live_verdict, pcap_verdict)
    }

    pub fn rackboot_log(&self) -> String {
        match self.proxy_kind {
            ProxyKind::Rackboot => self.proxy_log(),
            ProxyKind::Dnsmasq => String::new(),
        }
    }

    pub fn boot(&mut self, machine: Machine) {
        machine.require();
        self.vm = Some(machine.start(&self.ns, &self.vm_dir));
        self.machine = Some(machine);
        self.vm_started = Some(Instant::now());
    }

    /// Raw bytes of serial port `index` (0: COM1).
    pub fn serial_bytes(&self, index: usize) -> Vec<u8> {
        let Some(machine) = self.machine else {
            return Vec::new();
        };
        machine
            .serial_paths(&self.vm_dir)
            .get(index)
            .and_then(|p| std::fs::read(p).ok())
            .unwrap_or_default()
    }

    /// Serial port `index` without escape sequences.
    pub fn serial(&self, index: usize) -> String {
        strip_ansi(&self.serial_bytes(index))
    }

    /// Waits until serial port `index` shows `needle`; returns the time
    /// since the VM started. Fails if the VM exits or `timeout` passes.
    pub fn wait_serial(&mut self, index: usize, needle: &str, timeout: Duration) -> Duration {
        let started = self.vm_started.expect("boot() first");
        let deadline = started + timeout;
        loop {
            let bytes = self.serial_bytes(index);
            if contains_bytes(&bytes, needle) || strip_ansi(&bytes).contains(needle) {
                let took = started.elapsed();
                eprintln!(
                    "[pxe] {}: COM{} showed {needle:?} after {took:.1?}",
                    self.test,
                    index + 1
                );
                return took;
            }
            if let Some(status) = self.vm.as_mut().and_then(Proc::exited) {
                self.fail(&format!(
                    "QEMU exited ({status}) before COM{} showed {needle:?}",
                    index + 1
                ));
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "COM{} did not show {needle:?} within {timeout:?}",
                    index + 1
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Stops the VM (the serial files stay).
    pub fn stop_vm(&mut self) {
        if let Some(mut vm) = self.vm.take() {
            vm.stop();
            self.vm_log = vm.log_text();
        }
    }

    /// Everything worth seeing when a test fails.
    pub fn report(&self) -> String {
        let mut out = String::new();
        out += &format!(
            "=== test {} in namespace {} (files: {})\n",
            self.test,
            self.ns.name,
            self.dir().display()
        );
        if let Some(machine) = self.machine {
            out += &format!(
                "=== QEMU ({machine:?}):\n{} {}\n",
                machine.program(),
                machine.args(&self.vm_dir).join(" ")
            );
            let log = self
                .vm
                .as_ref()
                .map(Proc::log_text)
                .unwrap_or_else(|| self.vm_log.clone());
            if !log.trim().is_empty() {
                out += &format!("--- qemu output ---\n{}\n", tail(&log, 20));
            }
            for i in 0..machine.serial_paths(&self.vm_dir).len() {
                out += &format!(
                    "--- COM{} (last 40 lines, escapes removed) ---\n{}\n",
                    i + 1,
                    tail(&self.serial(i), 40)
                );
            }
        }
        let proxy = match self.proxy_kind {
            ProxyKind::Rackboot => "rackboot",
            ProxyKind::Dnsmasq => "dnsmasq PXE stand-in",
        };
        out += &format!("--- {proxy} log ---\n{}\n", tail(&self.proxy_log(), 80));
        out += &format!(
            "--- DHCP server (dnsmasq) log ---\n{}\n",
            tail(&self.dhcp.log_text(), 30)
        );
        out += &format!("--- packets on br0 ---\n{}\n", self.capture.report());
        out
    }

    pub fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n{}", self.report());
    }

    /// Like `assert!`, with the report.
    pub fn check(&self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.fail(&msg());
        }
    }

    /// The DHCP server only leases addresses: none of its replies (port 67,
    /// an address in yiaddr) carries PXE options or a boot file.
    pub fn check_dhcp_server_not_pxe(&self) {
        use dhcproto::v4::OptionCode;
        let mut leases = 0;
        for (seen, m) in self.capture.dhcp() {
            if !seen.outgoing || seen.src.port() != 67 || m.yiaddr().is_unspecified() {
                continue;
            }
            leases += 1;
            let bad = [
                OptionCode::VendorExtensions,
                OptionCode::ClassIdentifier,
                OptionCode::TFTPServerName,
                OptionCode::BootfileName,
            ]
            .into_iter()
            .filter(|code| m.opts().get(*code).is_some())
            .collect::<Vec<_>>();
            self.check(bad.is_empty() && capture::field_text(m.fname()).is_empty(), || {
                format!("the address-only DHCP server answered like a PXE server ({bad:?}, file {:?}): {}", capture::field_text(m.fname()), seen.summary())
            });
        }
        self.check(leases > 0, || {
            "the DHCP server never leased an address".into()
        });
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        if std::env::var("RACKBOOT_PXE_KEEP").is_ok_and(|v| v == "1")
            && let Some(dir) = self.dir.take()
        {
            eprintln!("[pxe] kept {}", dir.keep().display());
        }
    }
}

/// The plain DHCP server: leases 10.214.N.50-99, router advertisements for
/// fd00:214:N::/64; no PXE, no TFTP, no DNS.
fn start_address_server(ns: &Netns, dnsmasq: &Path, dir: &Path) -> Proc {
    let n = ns.n;
    let mut cmd = ns.command(dnsmasq.to_str().expect("path"));
    cmd.args([
        "--no-daemon",
        "--port=0",
        "--interface=br0",
        "--bind-interfaces",
        "--no-resolv",
        "--conf-file=/dev/null",
        "--log-dhcp",
        "--log-facility=-",
        "--user=root",
        "--enable-ra",
        // Offer at once, without dnsmasq's 3 s ping check of the address.
        "--no-ping",
    ])
    .arg(format!("--dhcp-range=10.214.{n}.50,10.214.{n}.99,12h"))
    .arg("--dhcp-range=::,constructor:br0,ra-only")
    .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
    .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()));
    let mut proc = ns.spawn("dnsmasq (addresses only)", cmd, &dir.join("dnsmasq.log"));
    proc.wait_log(READY_TIMEOUT, |log| {
        log.contains("sockets bound exclusively")
    });
    proc
}

//! `rackboot status` and `rackboot reload` against a running server, over
//! its control socket: the socket's mode, the table's memory bound with
//! 100,000 distinct simulated clients (rackboot-load's DHCP scenario), and
//! a reload that applies a changed configuration and refuses a broken one
//! with its file:line. (The stages of a real boot: tests/pxe_boot.rs,
//! `status_follows_a_bios_boot_to_its_kernel_and_initrd`.)

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::load::Load;
use common::{Fixture, Io, Server, ServerConfig, free_proxy_ports};
use dhcproto::{Decodable, Decoder, v4::Message};
use rackboot::dhcp::{Arch, ReplyKind};
use rackboot::status::table::{Key, NoNeighbours, Table};
use rackboot::status::{BootEvent, FileOutcome, Name, Protocol};

// ---------------------------------------------------------------------------
// The table's heap, counted by the allocator (this thread's only)
// ---------------------------------------------------------------------------

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + delta);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

// SAFETY: every call is passed to System unchanged; the counting touches
// only const-initialised thread-locals (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// 100,000 machines through a table of 4096: the heap it holds never
/// exceeds [`Table::memory_bound`], and taking in events allocates nothing
/// once the table exists.
#[test]
fn the_tables_heap_stays_within_its_bound_after_100000_machines() {
    let capacity = rackboot::status::table::DEFAULT_CAPACITY;
    let bound = Table::memory_bound(capacity) as isize;
    let before = live();
    let mut table = Table::new(capacity);
    let made = live();
    PEAK.with(|p| p.set(made));
    let mut arp = NoNeighbours;
    for n in 0..100_000u32 {
        let [_, b, c, d] = n.to_be_bytes();
        let mac = [0x02, 0x42, 0, b, c, d];
        let ip = Ipv4Addr::new(10, b, c, d);
        for kind in [ReplyKind::Offer, ReplyKind::Ack] {
            let event = BootEvent::Proxy {
                mac,
                ip: (kind == ReplyKind::Ack).then_some(ip),
                arch: Arch::Bios,
                kind,
                vendor_class: Name::new(&[b'v'; 200]),
                file: Name::new(&[b'f'; 200]),
            };
            table.apply(&event, u64::from(n), &mut arp);
        }
        for (who, name) in [(ip, "vmlinuz"), (Ipv4Addr::new(11, b, c, d), "initrd.img")] {
            let event = BootEvent::File {
                ip: who.into(),
                protocol: Protocol::Tftp,
                name: Name::new(name.as_bytes()),
                outcome: FileOutcome::Complete,
                bytes: 1,
                elapsed: Duration::ZERO,
            };
            table.apply(&event, u64::from(n), &mut arp);
        }
    }
    let peak = PEAK.with(Cell::get);
    let after = live();
    let len = table.len();
    let evicted = table.evicted();
    let newest = table
        .get(&Key::Mac([0x02, 0x42, 0, 1, 0x86, 0x9f]))
        .is_some();
    drop(table);
    assert_eq!(live(), before, "the table freed everything");
    eprintln!(
        "table of {capacity}: {} bytes after creation, {} after 100000 machines, peak {}, bound {bound}",
        made - before,
        after - before,
        peak - before
    );
    assert_eq!(len, capacity);
    assert!(evicted >= 100_000 - capacity as u64);
    assert!(newest, "the last machine is there");
    assert!(made - before <= bound, "{} > {bound}", made - before);
    assert!(after - before <= bound, "{} > {bound}", after - before);
    assert_eq!(peak, made, "applying events allocated");
}

// ---------------------------------------------------------------------------
// Against the server
// ---------------------------------------------------------------------------

/// Binding ports 67 and 68 needs privileges.
fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test runs rackboot-load's DHCP clients (ports 67/68) and must run as root (CI does)"
    );
}

fn rackboot(args: &[&str]) -> Output {
    // Output into files: a pipe nobody reads while waiting would fill.
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .expect("start rackboot");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Output {
                status,
                stdout: fs::read(&out).unwrap(),
                stderr: fs::read(&err).unwrap(),
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill(); // our own child, by PID
            let _ = child.wait();
            panic!("rackboot {args:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_json(socket: &Path) -> serde_json::Value {
    let out = rackboot(&[
        "status",
        "--json",
        "--control-socket",
        socket.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "rackboot status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "rackboot status --json: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// rackboot-load's DHCP scenario: `clients` distinct MACs, bounded.
fn dhcp_load(dhcp_port: u16, pxe_port: u16, clients: u32, dir: &Path) -> serde_json::Value {
    let args: Vec<String> = [
        "--server",
        &SocketAddr::from((Ipv4Addr::LOCALHOST, dhcp_port)).to_string(),
        "--pxe-port",
        &pxe_port.to_string(),
        "--scenario",
        "dhcp",
        "--clients",
        &clients.to_string(),
        "--concurrency",
        "1000",
    ]
    .map(String::from)
    .to_vec();
    let json = dir.join(format!("load-{clients}.json"));
    let log = dir.join(format!("load-{clients}.log"));
    let (code, summary, output) =
        Load::start(&args, Duration::from_secs(180), &json, &log).finish();
    assert_eq!(code, Some(0), "rackboot-load failed:\n{output}");
    eprintln!("{output}");
    summary
}

/// 100,000 distinct clients through the proxy: the table holds at most its
/// capacity, and the server's resident memory grows by less than the
/// status machinery's bound plus a little slack (an unbounded table would
/// take about 100,000 × its entry size, over 50 MiB).
#[test]
fn status_of_100000_simulated_clients_stays_within_its_bound() {
    require_root();
    let fixture = Fixture::new(&[]);
    let root = fixture.root();
    fs::write(root.join("pxelinux.0"), b"pxelinux").unwrap();
    let socket = fixture.dir.path().join("control.sock");
    let (dhcp_port, pxe_port) = free_proxy_ports();
    let mut cfg = ServerConfig::new(Io::Epoll);
    cfg.extra_args = vec![
        "--boot".into(),
        "bios=pxelinux.0".into(),
        "--dhcp-port".into(),
        dhcp_port.to_string(),
        "--pxe-port".into(),
        pxe_port.to_string(),
        "--control-socket".into(),
        socket.display().to_string(),
    ];
    let mut server = Server::spawn(&root, &cfg);
    // Warm up the proxy's own paths first (their buffers, the logger).
    dhcp_load(dhcp_port, pxe_port, 1000, fixture.dir.path());
    std::thread::sleep(Duration::from_millis(300));
    let warm = status_json(&socket);
    let by_mac = |doc: &serde_json::Value| {
        doc["machines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["mac"].is_string())
            .count()
    };
    // (Plus the harness's TFTP probe from 127.0.0.1, by address.)
    assert_eq!(by_mac(&warm), 1000, "{warm:#}");
    let before = rss_kib(server.pid());
    let summary = dhcp_load(dhcp_port, pxe_port, 100_000, fixture.dir.path());
    assert_eq!(summary["acks"], 100_000, "{summary}");
    std::thread::sleep(Duration::from_millis(300));
    let doc = status_json(&socket);
    let after = rss_kib(server.pid());
    let capacity = doc["capacity"].as_u64().unwrap();
    let count = doc["count"].as_u64().unwrap();
    let bound = doc["status_memory_bound_bytes"].as_u64().unwrap();
    let dropped = doc["dropped_events"].as_u64().unwrap();
    eprintln!(
        "count {count}/{capacity}, evicted {}, dropped events {dropped}, RSS {before} → {after} KiB, \
         bound {} KiB",
        doc["evicted"],
        bound / 1024
    );
    assert_eq!(capacity, rackboot::status::table::DEFAULT_CAPACITY as u64);
    assert_eq!(count, capacity, "the table is full, not over");
    assert_eq!(doc["machines"].as_array().unwrap().len() as u64, count);
    assert!(
        doc["evicted"].as_u64().unwrap() > 90_000,
        "{}",
        doc["evicted"]
    );
    // The newest machines are there, tied to their 4011 ciaddr.
    let newest = &doc["machines"][0];
    assert_eq!(newest["stage"], "ack", "{newest:#}");
    assert!(
        newest["ip"].as_str().unwrap().starts_with("127."),
        "{newest:#}"
    );
    const SLACK_KIB: u64 = 8 * 1024;
    assert!(
        after.saturating_sub(before) < bound / 1024 + SLACK_KIB,
        "RSS grew {} KiB with 100,000 clients; the status bound is {} KiB (+{SLACK_KIB} KiB slack)",
        after - before,
        bound / 1024
    );
    server.assert_alive();
    server.stop();
}

/// The ACK the proxy sends an x64 UEFI machine on port 4011 names this file.
fn acked_file(pxe_port: u16) -> String {
    let path = format!(
        "{}/tests/fixtures/dhcp/ovmf_x64_request_4011.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut request = fs::read(path).unwrap();
    request[12..16].copy_from_slice(&[127, 0, 0, 1]); // ciaddr: the ACK comes here
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        socket.send_to(&request, ("127.0.0.1", pxe_port)).unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            let ack = Message::decode(&mut Decoder::new(&buf[..n])).expect("a DHCP ACK");
            return String::from_utf8_lossy(ack.fname().unwrap_or_default())
                .trim_end_matches('\0')
                .to_owned();
        }
    }
    panic!("no ACK from the proxy on port {pxe_port}");
}

fn write_config(path: &Path, file: &str, extra: &str) {
    fs::write(
        path,
        format!("[[boot]]\narch = \"x64-uefi\"\nfile = \"{file}\"\n{extra}"),
    )
    .unwrap();
}

/// `rackboot reload` over the socket: a changed boot file applies to the
/// next request; a broken file is refused with its file:line (exit status
/// 1), and the configuration stays as it was. The socket is mode 0600.
#[test]
fn reload_over_the_socket_applies_a_change_and_refuses_a_broken_file() {
    let fixture = Fixture::new(&[]);
    let root = fixture.root();
    for file in ["one.efi", "two.efi"] {
        fs::write(root.join(file), file).unwrap();
    }
    let config = fixture.dir.path().join("rackboot.toml");
    write_config(&config, "one.efi", "");
    let socket = fixture.dir.path().join("run/control.sock");
    let (dhcp_port, pxe_port) = free_proxy_ports();
    let mut cfg = ServerConfig::new(Io::Epoll);
    cfg.extra_args = vec![
        "--config".into(),
        config.display().to_string(),
        "--dhcp-port".into(),
        dhcp_port.to_string(),
        "--pxe-port".into(),
        pxe_port.to_string(),
        "--control-socket".into(),
        socket.display().to_string(),
    ];
    let mut server = Server::spawn(&root, &cfg);
    let meta = fs::symlink_metadata(&socket).expect("the control socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600, "socket mode");
    let dir_mode = fs::metadata(socket.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o7777, 0o755, "the directory made for it");
    assert_eq!(acked_file(pxe_port), "one.efi");

    let sock = socket.to_str().unwrap();
    write_config(&config, "two.efi", "");
    let out = rackboot(&["reload", "--control-socket", sock]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "reload failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("reloaded"), "{stdout}");
    assert_eq!(
        acked_file(pxe_port),
        "two.efi",
        "the new file for new requests"
    );

    // Line 4 is the broken one.
    write_config(&config, "one.efi", "max_window = \"lots\"\n");
    let out = rackboot(&["reload", "--control-socket", sock]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a refused reload exits 1: {stderr}"
    );
    assert!(stderr.contains("rackboot.toml:4"), "file:line: {stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
    assert_eq!(
        acked_file(pxe_port),
        "two.efi",
        "the running configuration stays"
    );
    assert!(
        server.log_tail().contains("rackboot.toml:4"),
        "the server logs it too:\n{}",
        server.log_tail()
    );

    // The reload's machines show too: the 4011 ACKs above, tied to ciaddr.
    let doc = status_json(&socket);
    let machine = &doc["machines"][0];
    assert_eq!(machine["ip"], "127.0.0.1", "{doc:#}");
    assert_eq!(machine["arch"], "x64-uefi", "{doc:#}");
    assert_eq!(machine["boot_file"], "two.efi", "{doc:#}");
    // The plain table names it.
    let out = rackboot(&["status", "--control-socket", sock]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(table.starts_with("1 machine(s)"), "{table}");
    assert!(
        table.contains("MACHINE") && table.contains("x64-uefi"),
        "{table}"
    );

    // An unknown request is answered, not dropped.
    let answer =
        rackboot::status::control::request(&socket, "frobnicate", Duration::from_secs(5)).unwrap();
    assert!(answer.starts_with("error: unknown request"), "{answer}");
    server.assert_alive();
    server.stop();
}

/// `--control-socket none` makes none; a path that cannot be made is one
/// warning, and the server serves on.
#[test]
fn the_control_socket_can_be_off_or_fail_without_stopping_the_server() {
    let fixture = Fixture::new(&[]);
    let root = fixture.root();
    fs::write(root.join("a.efi"), b"a").unwrap();
    let (dhcp_port, pxe_port) = free_proxy_ports();
    let blocker = fixture.dir.path().join("not-a-dir");
    fs::write(&blocker, b"").unwrap();
    let impossible = blocker.join("control.sock");
    for (socket, warned) in [("none", false), (impossible.to_str().unwrap(), true)] {
        let mut cfg = ServerConfig::new(Io::Epoll);
        cfg.extra_args = vec![
            "--boot".into(),
            "x64-uefi=a.efi".into(),
            "--dhcp-port".into(),
            dhcp_port.to_string(),
            "--pxe-port".into(),
            pxe_port.to_string(),
            "--control-socket".into(),
            socket.into(),
        ];
        let mut server = Server::spawn(&root, &cfg);
        assert_eq!(acked_file(pxe_port), "a.efi", "the proxy serves");
        let log = server.log_tail();
        let warnings = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("control socket"))
            .count();
        assert_eq!(warnings, usize::from(warned), "{log}");
        assert!(!log.contains("control socket ") || warned, "{log}");
        let out = rackboot(&["status", "--control-socket", socket]);
        assert!(!out.status.success(), "no socket, no status");
        server.assert_alive();
        server.stop();
    }
}

//! `--hosts-dir`: per-machine rules in a watched directory, against a real
//! server over real UDP on loopback. A file renamed into the directory
//! applies to that machine's next DISCOVER within a second, with no
//! signal; removing it reverts; a broken file keeps the old rule and its
//! error names file:line; an Ironic `MAC,ignore` line silences that
//! machine only; a Kubernetes ConfigMap's `..data` symlink swap is picked
//! up; the directory's rules win over the configuration's and survive a
//! SIGHUP.
//!
//! How offers come back on loopback: each test acts as a DHCP relay
//! (giaddr a 127.0.111.x of its own, bound on port 67), so the proxy
//! unicasts its OFFER there. Port 67 is privileged: these tests run as
//! root (CI does) or with CAP_NET_BIND_SERVICE.

mod common;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    Fixture, Io, Server, ServerConfig, free_proxy_ports, free_udp_port, require_low_ports,
};
use dhcproto::{Decodable, Decoder, v4::Message};

/// How often a machine asks again while a change is awaited.
const POLL: Duration = Duration::from_millis(50);
/// How soon a change must reach the next DISCOVER.
const APPLY_LIMIT: Duration = Duration::from_secs(1);

const MACHINE: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const OTHER: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x57];
const MACHINE_TEXT: &str = "52:54:00:12:34:56";

/// What a DISCOVER got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// An offer naming this boot file ("" for none: the BIOS menu).
    Offer(String),
    Silence,
}

fn offer(file: &str) -> Answer {
    Answer::Offer(file.to_owned())
}

/// rackboot with BIOS and x64 UEFI entries and `--hosts-dir`, and this
/// test's relay socket.
struct Proxy {
    server: Server,
    _fixture: Fixture,
    dir: PathBuf,
    dhcp_port: u16,
    relay_ip: Ipv4Addr,
    relay: UdpSocket,
    xid: u32,
}

impl Proxy {
    /// `prepare` lays out the hosts directory before the server starts;
    /// `config` is a TOML configuration (empty: boot entries as flags).
    fn start(relay_host: u8, config: &str, prepare: impl FnOnce(&Path)) -> Proxy {
        require_low_ports();
        let fixture = Fixture::new(&[]);
        let dir = fixture.dir.path().join("hosts");
        fs::create_dir(&dir).unwrap();
        prepare(&dir);
        let (dhcp_port, pxe_port) = free_proxy_ports();
        let mut args: Vec<String> = [
            "--dhcp-port",
            &dhcp_port.to_string(),
            "--pxe-port",
            &pxe_port.to_string(),
            "--hosts-dir",
            dir.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        if config.is_empty() {
            args.extend(
                ["--boot", "bios=pxelinux.0", "--boot", "x64-uefi=ipxe.efi"].map(String::from),
            );
        } else {
            let path = fixture.dir.path().join("rackboot.toml");
            fs::write(&path, config).unwrap();
            args.extend(["--config".into(), path.to_str().unwrap().into()]);
        }
        let mut cfg = ServerConfig::new(Io::Epoll);
        cfg.extra_args = args;
        let server = Server::spawn(&fixture.root(), &cfg);
        let relay_ip = Ipv4Addr::new(127, 0, 111, relay_host);
        let relay = UdpSocket::bind((relay_ip, 67)).expect("bind the relay's port 67");
        Proxy {
            server,
            _fixture: fixture,
            dir,
            dhcp_port,
            relay_ip,
            relay,
            xid: u32::from(relay_host) << 24,
        }
    }

    /// Sends one BIOS DISCOVER from `mac` (relayed) and waits up to `wait`
    /// for its offer.
    fn discover(&mut self, mac: [u8; 6], wait: Duration) -> Answer {
        self.xid += 1;
        let mut request = fs::read(format!(
            "{}/tests/fixtures/dhcp/intel_bios_discover.bin",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        request[4..8].copy_from_slice(&self.xid.to_be_bytes());
        request[24..28].copy_from_slice(&self.relay_ip.octets());
        request[28..34].copy_from_slice(&mac);
        self.relay
            .send_to(&request, (Ipv4Addr::LOCALHOST, self.dhcp_port))
            .unwrap();
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 1500];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Answer::Silence;
            }
            self.relay.set_read_timeout(Some(left)).unwrap();
            let Ok((n, _)) = self.relay.recv_from(&mut buf) else {
                return Answer::Silence;
            };
            let Ok(message) = Message::decode(&mut Decoder::new(&buf[..n])) else {
                continue;
            };
            // A late offer for an earlier DISCOVER is not this one's.
            if message.xid() != self.xid {
                continue;
            }
            assert_eq!(message.chaddr()[..6], mac);
            let file = message.fname().unwrap_or_default();
            return Answer::Offer(
                String::from_utf8_lossy(file)
                    .trim_end_matches('\0')
                    .to_owned(),
            );
        }
    }

    /// The answer when it is settled (a silence is waited out longer).
    fn settled(&mut self, mac: [u8; 6]) -> Answer {
        self.discover(mac, Duration::from_secs(1))
    }

    /// DISCOVERs from `mac` every 50 ms until one gets `want`, for at most
    /// a second after `since`; returns how long after `since` it came.
    fn await_answer(
        &mut self,
        mac: [u8; 6],
        want: &Answer,
        since: Instant,
        what: &str,
    ) -> Duration {
        loop {
            let sent = Instant::now();
            let got = self.discover(mac, POLL);
            if got == *want {
                let after = sent.duration_since(since);
                eprintln!("{what}: the DISCOVER sent {after:?} after the change got {want:?}");
                if *want == Answer::Silence {
                    // A silence is real only if it lasts.
                    assert_eq!(self.settled(mac), Answer::Silence, "{what}: answered again");
                }
                return after;
            }
            assert!(
                sent.duration_since(since) < APPLY_LIMIT,
                "{what}: still {got:?} (not {want:?}) {:?} after the change; log:\n{}",
                sent.duration_since(since),
                self.server.log_tail()
            );
            std::thread::sleep(POLL.saturating_sub(sent.elapsed()));
        }
    }

    /// Writes `text` to a hidden temporary file and renames it to `name`,
    /// as editors and Ironic do; returns the moment of the rename.
    fn install(&self, name: &str, text: &str) -> Instant {
        let staged = self.dir.join(format!(".{name}.tmp"));
        fs::write(&staged, text).unwrap();
        let at = Instant::now();
        fs::rename(&staged, self.dir.join(name)).unwrap();
        at
    }

    fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.server.log_tail().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "log lacks {needle:?}:\n{}",
                self.server.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn machine_file(file: &str) -> String {
    format!("# one machine\nmac = \"{MACHINE_TEXT}\"\nfile = \"{file}\"\n")
}

#[test]
fn a_file_renamed_in_applies_within_a_second_and_removing_it_reverts() {
    let mut proxy = Proxy::start(1, "", |_| {});
    proxy.wait_log("hosts-dir: 0 machines from 0 files");
    let before = proxy.settled(MACHINE);
    assert_eq!(before, offer(""), "BIOS gets the menu, no file");

    let at = proxy.install("m1", &machine_file("special/pxelinux.0"));
    let took = proxy.await_answer(MACHINE, &offer("special/pxelinux.0"), at, "rename in");
    assert!(took < APPLY_LIMIT, "{took:?}");
    assert_eq!(proxy.settled(OTHER), before, "another machine is untouched");
    proxy.wait_log("hosts-dir: 1 machine from 1 file");

    let at = Instant::now();
    fs::remove_file(proxy.dir.join("m1")).unwrap();
    let took = proxy.await_answer(MACHINE, &before, at, "removal");
    assert!(took < APPLY_LIMIT, "{took:?}");
    proxy.server.assert_alive();
}

#[test]
fn a_broken_file_keeps_the_old_rule_and_names_file_and_line() {
    let mut proxy = Proxy::start(2, "", |dir| {
        fs::write(dir.join("m1"), machine_file("first.0")).unwrap();
    });
    assert_eq!(proxy.settled(MACHINE), offer("first.0"));

    // A typo on line 3, and a bad dnsmasq line in another file.
    proxy.install(
        "m1",
        &format!("# one machine\nmac = \"{MACHINE_TEXT}\"\nfiel = \"second.0\"\n"),
    );
    proxy.install("m2", "52:54:00:12:34:zz,ignore\n");
    let m1 = proxy.dir.join("m1");
    let m2 = proxy.dir.join("m2");
    proxy.wait_log(&format!("{}:3: unknown field `fiel`", m1.display()));
    proxy.wait_log(&format!(
        "{}:1: `52:54:00:12:34:zz` is not a MAC address",
        m2.display()
    ));
    proxy.wait_log("the rules stay as they were");
    assert_eq!(
        proxy.settled(MACHINE),
        offer("first.0"),
        "the old rule stays"
    );

    // Fixed: applies.
    fs::remove_file(&m2).unwrap();
    let at = proxy.install("m1", &machine_file("second.0"));
    proxy.await_answer(MACHINE, &offer("second.0"), at, "fixed file");
}

#[test]
fn an_ironic_ignore_line_silences_that_machine_only() {
    let mut proxy = Proxy::start(3, "", |_| {});
    assert_eq!(proxy.settled(MACHINE), offer(""));
    // As Ironic's dnsmasq PXE filter writes them: one file per MAC.
    let at = proxy.install(MACHINE_TEXT, &format!("{MACHINE_TEXT},ignore\n"));
    let took = proxy.await_answer(MACHINE, &Answer::Silence, at, "ignore");
    assert!(took < APPLY_LIMIT, "{took:?}");
    assert_eq!(proxy.settled(OTHER), offer(""), "others are still answered");
    // Allowed again: the tag marks it known; it gets the ordinary answer.
    let at = proxy.install(
        MACHINE_TEXT,
        &format!("{MACHINE_TEXT},set:9f1c2a,set:ironic\n"),
    );
    proxy.await_answer(MACHINE, &offer(""), at, "set:tag");
    proxy.wait_log("hosts-dir: 1 machine from 1 file");
}

#[test]
fn a_configmap_data_symlink_swap_is_picked_up() {
    // A ConfigMap volume: the files live in a timestamped directory,
    // `..data` points at it, and each entry is a symlink through `..data`.
    let mut proxy = Proxy::start(4, "", |dir| {
        fs::create_dir(dir.join("..2026_12_02_10_00_00.1")).unwrap();
        fs::write(
            dir.join("..2026_12_02_10_00_00.1/m1"),
            machine_file("v1/pxelinux.0"),
        )
        .unwrap();
        std::os::unix::fs::symlink("..2026_12_02_10_00_00.1", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/m1", dir.join("m1")).unwrap();
    });
    assert_eq!(proxy.settled(MACHINE), offer("v1/pxelinux.0"));

    // The kubelet's update: a new directory, a new `..data_tmp` symlink
    // renamed over `..data`, the old directory removed.
    let dir = proxy.dir.clone();
    fs::create_dir(dir.join("..2026_12_02_10_05_00.2")).unwrap();
    fs::write(
        dir.join("..2026_12_02_10_05_00.2/m1"),
        machine_file("v2/pxelinux.0"),
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_12_02_10_05_00.2", dir.join("..data_tmp")).unwrap();
    let at = Instant::now();
    fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    fs::remove_dir_all(dir.join("..2026_12_02_10_00_00.1")).unwrap();
    let took = proxy.await_answer(MACHINE, &offer("v2/pxelinux.0"), at, "..data swap");
    assert!(took < APPLY_LIMIT, "{took:?}");
}

#[test]
fn directory_rules_win_over_the_configuration_and_survive_sighup() {
    let config = |file: &str| {
        format!(
            "[[boot]]\narch = \"bios\"\nfile = \"pxelinux.0\"\n\n\
             [[mac]]\nmac = \"{MACHINE_TEXT}\"\nfile = \"{file}\"\n\n\
             [[mac]]\nmac = \"52:54:00:12:34:57\"\nfile = \"other.0\"\n"
        )
    };
    let mut proxy = Proxy::start(5, &config("main.0"), |dir| {
        fs::write(dir.join("m1"), machine_file("dir.0")).unwrap();
    });
    assert_eq!(proxy.settled(MACHINE), offer("dir.0"), "the directory wins");
    assert_eq!(proxy.settled(OTHER), offer("other.0"));

    // A SIGHUP reads both again: the directory still wins, the rest of the
    // configuration changes.
    let path = proxy._fixture.dir.path().join("rackboot.toml");
    fs::write(&path, config("main2.0").replace("other.0", "other2.0")).unwrap();
    // SAFETY: kill(2) on the PID of the server this test started.
    assert_eq!(
        unsafe { libc::kill(proxy.server.pid() as i32, libc::SIGHUP) },
        0
    );
    proxy.wait_log("configuration reloaded");
    assert_eq!(proxy.settled(OTHER), offer("other2.0"));
    assert_eq!(proxy.settled(MACHINE), offer("dir.0"));

    // Without the file, the configuration's rule (the reloaded one) applies.
    let at = Instant::now();
    fs::remove_file(proxy.dir.join("m1")).unwrap();
    proxy.await_answer(MACHINE, &offer("main2.0"), at, "removal after SIGHUP");
}

#[test]
fn an_invalid_directory_at_start_refuses_to_serve() {
    let fixture = Fixture::new(&[]);
    let dir = fixture.dir.path().join("hosts");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("m1"), "52:54:00:12:34,ignore\nnonsense\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .args(["--root", fixture.root().to_str().unwrap(), "--listen"])
        .arg(SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port(false))).to_string())
        .args(["--boot", "bios=pxelinux.0", "--dhcp-port"])
        .arg(free_udp_port(false).to_string())
        .args(["--pxe-port"])
        .arg(free_udp_port(false).to_string())
        .arg("--hosts-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:2: names no MAC address",
            dir.join("m1").display()
        )),
        "{stderr}"
    );
}

//! End-to-end network boots of real firmware through rackboot: SeaBIOS with
//! QEMU's iPXE option ROM, OVMF (EDK2's own PXE client) and, for ARM64,
//! AAVMF booting GRUB's network image, under QEMU TCG
//! in network namespaces (see tests/pxe/mod.rs for the topology and the
//! development switches). Plus the proxy policy against the DHCP requests
//! recorded from those same firmware runs (tests/fixtures/dhcp/recorded).
//!
//! Needs root and the packages of .ci/install.sh (qemu-system-x86, ovmf,
//! ipxe-qemu, ipxe, pxelinux, syslinux-common, dnsmasq, iproute2,
//! qemu-system-arm, qemu-efi-aarch64, and grubnetaa64.efi unpacked from
//! grub-efi-arm64-bin:arm64); a missing one fails the test with its name.
//! VMs run one at a time.

mod pxe;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder};
use rackboot::dhcp::{
    Arch, BootEntry, Destination, MAX_REPLY_LEN, Policy, ProxyConfig, ReplyKind, Request,
    ServerPort, Silence,
};

use pxe::capture::{self, Seen};
use pxe::qemu::{MAC_BYTES, Machine};
use pxe::{ARM64_BOOT_TIMEOUT, BIOS_BOOT_TIMEOUT, ProxyKind, Scene, UEFI_BOOT_TIMEOUT};

const MENU_TEXT: &str = "Boot from Local Disk";
const SCRIPT_MARK: &str = "rackboot-script-ran";

/// pxelinux writes its menu to COM2 (`SERIAL 1`): under -nographic SeaBIOS
/// already mirrors the screen onto COM1, and `SERIAL 0` would interleave
/// both copies character by character ("BBoooott  ffrroomm").
const PXELINUX_CFG: &str = "\
SERIAL 1 115200
UI menu.c32
MENU TITLE rackboot test
TIMEOUT 600
LABEL local
  MENU LABEL Boot from Local Disk
  LOCALBOOT 0
";

/// The script iPXE must get instead of itself; `shell` keeps it there.
const BOOT_IPXE: &str = "#!ipxe\necho rackboot-script-ran\nshell\n";

const PXELINUX: (&str, &str) = ("/usr/lib/PXELINUX/pxelinux.0", "pxelinux");
const SYSLINUX_MODULES: [(&str, &str); 3] = [
    (
        "/usr/lib/syslinux/modules/bios/ldlinux.c32",
        "syslinux-common",
    ),
    ("/usr/lib/syslinux/modules/bios/menu.c32", "syslinux-common"),
    (
        "/usr/lib/syslinux/modules/bios/libutil.c32",
        "syslinux-common",
    ),
];
const SNPONLY: (&str, &str) = ("/usr/lib/ipxe/snponly.efi", "ipxe");
const UNDIONLY: (&str, &str) = ("/usr/lib/ipxe/undionly.kpxe", "ipxe");

fn pxelinux_root(root: &Path) {
    pxe::install(root, &[PXELINUX]);
    pxe::install(root, &SYSLINUX_MODULES);
    std::fs::create_dir(root.join("pxelinux.cfg")).expect("pxelinux.cfg");
    std::fs::write(root.join("pxelinux.cfg/default"), PXELINUX_CFG).expect("write default");
}

fn script_root(root: &Path, loader: (&str, &str)) {
    pxe::install(root, &[loader]);
    std::fs::write(root.join("boot.ipxe"), BOOT_IPXE).expect("write boot.ipxe");
}

fn requires_pxelinux() {
    pxe::require_file(PXELINUX.0, PXELINUX.1);
    for (path, package) in SYSLINUX_MODULES {
        pxe::require_file(path, package);
    }
}

/// EDK2's PXE exchange as the capture shows it: a DISCOVER of `arch`, the
/// proxy's offer without file or option 43 (which sends EDK2 to port
/// 4011), the REQUEST to the proxy's port 4011 and its ACK from there,
/// back to the request's source, naming `file`. Returns the DISCOVER and
/// the 4011 REQUEST.
fn check_edk2_4011_exchange(
    scene: &Scene,
    firmware: &str,
    arch: u16,
    file: &str,
) -> ((Seen, Message), (Seen, Message)) {
    let server = scene.server();
    let discover = first_request(scene, 67, MessageType::Discover, false)
        .unwrap_or_else(|| scene.fail(&format!("no DISCOVER from {firmware}")));
    scene.check(capture::arch(&discover.1) == Some(arch), || {
        format!(
            "{firmware} DISCOVER: option 93 {:?}, expected {arch}",
            capture::arch(&discover.1)
        )
    });
    let (_, offer) = proxy_reply_to(scene, &discover)
        .unwrap_or_else(|| scene.fail(&format!("no proxy offer to {firmware}'s DISCOVER")));
    scene.check(
        capture::msg_type(&offer) == Some(MessageType::Offer)
            && offer.yiaddr().is_unspecified()
            && offer.siaddr() == server
            && capture::field_text(offer.fname()).is_empty()
            && offer.opts().get(OptionCode::VendorExtensions).is_none()
            && vendor_class_is_pxeclient(&offer),
        || format!("offer to {firmware}: expected yiaddr 0, siaddr = server, no file, no 43, 60 PXEClient"),
    );
    let request = first_request(scene, 4011, MessageType::Request, false)
        .unwrap_or_else(|| scene.fail(&format!("{firmware} never asked on port 4011")));
    scene.check(
        *request.0.dst.ip() == server && capture::arch(&request.1) == Some(arch),
        || format!("4011 request not sent to the proxy, or not arch {arch}"),
    );
    let (ack_seen, ack) = proxy_reply_to(scene, &request)
        .unwrap_or_else(|| scene.fail(&format!("no reply to {firmware}'s port-4011 request")));
    scene.check(
        ack_seen.src == SocketAddrV4::new(server, 4011) && ack_seen.dst == request.0.src,
        || {
            format!(
                "4011 ACK went {} -> {}, request came from {}",
                ack_seen.src, ack_seen.dst, request.0.src
            )
        },
    );
    scene.check(
        capture::msg_type(&ack) == Some(MessageType::Ack)
            && capture::field_text(ack.fname()) == file
            && ack.siaddr() == server,
        || format!("4011 ACK: expected file {file} and siaddr = server"),
    );
    (discover, request)
}

// ---------------------------------------------------------------------------
// Reading the capture
// ---------------------------------------------------------------------------

/// Requests the VM sent (to port 67 or 4011), with their messages.
/// A live `rackboot doctor` on the bridge during the boot and `doctor
/// --pcap` on the test's own capture of it give the same verdict on the
/// VM, and it says each of `expected`.
fn check_doctor(scene: &mut Scene, expected: &[&str]) {
    let (live, pcap) = scene.doctor_verdicts();
    eprintln!("[pxe] doctor: {live}");
    scene.check(live == pcap, || {
        format!("doctor live and --pcap disagree:\n  live: {live}\n  pcap: {pcap}")
    });
    for words in expected {
        scene.check(live.contains(words), || {
            format!("doctor's verdict lacks {words:?}: {live}")
        });
    }
}

fn client_requests(scene: &Scene) -> Vec<(Seen, Message)> {
    scene
        .capture
        .dhcp()
        .into_iter()
        .filter(|(s, m)| !s.outgoing && m.opcode() == Opcode::BootRequest)
        .collect()
}

fn first_request(
    scene: &Scene,
    port: u16,
    kind: MessageType,
    ipxe: bool,
) -> Option<(Seen, Message)> {
    client_requests(scene).into_iter().find(|(s, m)| {
        s.dst.port() == port
            && capture::msg_type(m) == Some(kind)
            && (capture::user_class(m).as_deref() == Some("iPXE")) == ipxe
    })
}

/// rackboot's (or the stand-in's) reply to `request`: same xid, from the
/// server port the request went to, no leased address in any reply.
fn proxy_reply_to(scene: &Scene, request: &(Seen, Message)) -> Option<(Seen, Message)> {
    let (seen, message) = request;
    scene.capture.dhcp().into_iter().find(|(s, m)| {
        s.outgoing
            && m.opcode() == Opcode::BootReply
            && m.xid() == message.xid()
            && s.src.port() == seen.dst.port()
            && m.yiaddr().is_unspecified()
    })
}

fn vendor_class_is_pxeclient(m: &Message) -> bool {
    capture::class_id(m).as_deref() == Some("PXEClient")
}

/// TFTP read requests on the wire from the first one for `first` on, with
/// retransmissions (the same name twice in a row) folded.
fn wire_reads_from(scene: &Scene, first: &str) -> Vec<String> {
    let mut reads = scene.capture.tftp_reads();
    reads.dedup();
    match reads.iter().position(|r| r == first) {
        Some(at) => reads.split_off(at),
        None => Vec::new(),
    }
}

fn wire_read_count(scene: &Scene, file: &str) -> usize {
    scene
        .capture
        .tftp_reads()
        .iter()
        .filter(|r| *r == file)
        .count()
}

// ---------------------------------------------------------------------------
// pxelinux: what a boot to the menu must look like
// ---------------------------------------------------------------------------

/// The reads pxelinux makes up to its menu: itself, ldlinux.c32, the
/// config file search (MAC, then the address in hex dropping one digit at a
/// time; QEMU's SeaBIOS machine has no UUID), `default`, and menu.c32.
fn pxelinux_sequence(client: Ipv4Addr) -> Vec<(String, bool)> {
    let hex = format!("{:08X}", u32::from(client));
    let mac = MAC_BYTES.map(|b| format!("{b:02x}")).join("-");
    let mut seq = vec![
        ("pxelinux.0".to_owned(), true),
        ("ldlinux.c32".to_owned(), true),
        (format!("pxelinux.cfg/01-{mac}"), false),
    ];
    for digits in (1..=8).rev() {
        seq.push((format!("pxelinux.cfg/{}", &hex[..digits]), false));
    }
    seq.push(("pxelinux.cfg/default".to_owned(), true));
    seq.push(("menu.c32".to_owned(), true));
    seq
}

/// Menu on pxelinux's serial port; the TFTP sequence on the wire and, for
/// rackboot, in its log; the DHCP server stayed out of PXE.
fn check_pxelinux_menu(scene: &Scene) {
    let com2 = scene.serial(1);
    scene.check(
        com2.contains("rackboot test") && com2.contains(MENU_TEXT),
        || "pxelinux's serial output lacks the menu".into(),
    );
    let client = scene
        .capture
        .packets()
        .iter()
        .find(|s| s.tftp_rrq().as_deref() == Some("pxelinux.0"))
        .map(|s| *s.src.ip())
        .unwrap_or_else(|| scene.fail("no TFTP read request for pxelinux.0 on the wire"));
    let expected = pxelinux_sequence(client);

    let names: Vec<String> = expected.iter().map(|(n, _)| n.clone()).collect();
    let wire = wire_reads_from(scene, "pxelinux.0");
    scene.check(
        wire.len() >= names.len() && wire[..names.len()] == names[..],
        || format!("TFTP reads on the wire:\n  {wire:?}\nexpected to start with:\n  {names:?}"),
    );
    scene.check(wire_read_count(scene, "pxlinux.0") == 0, || {
        "a client asked for pxlinux.0 (dhcp-boot's name); BIOS PXE clients must get pxelinux.0"
            .into()
    });

    if scene.proxy_kind == ProxyKind::Rackboot {
        let log = scene.rackboot_log();
        let lines = pxe::tftp_lines(&log);
        let from = lines.iter().position(|l| l.file == "pxelinux.0");
        let got: Vec<(String, String)> = from
            .map(|at| {
                lines[at..]
                    .iter()
                    .map(|l| (l.file.clone(), l.outcome.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<(String, String)> = expected
            .iter()
            .map(|(n, found)| {
                (
                    n.clone(),
                    if *found { "Complete" } else { "refused" }.to_owned(),
                )
            })
            .collect();
        scene.check(
            got.len() >= want.len() && got[..want.len()] == want[..],
            || format!("rackboot's transfer log:\n  {got:?}\nexpected to start with:\n  {want:?}"),
        );
        let replies = pxe::proxy_lines(&log);
        scene.check(replies.iter().any(|r| r.arch == "Bios"), || {
            "rackboot logged no proxyDHCP reply for arch=Bios".into()
        });
    }
    scene.check_dhcp_server_not_pxe();
}

// ---------------------------------------------------------------------------
// (a) SeaBIOS + iPXE ROM → pxelinux.0 → menu
// ---------------------------------------------------------------------------

/// The iPXE ROM sends user class iPXE; without an ipxe_script it gets the
/// BIOS file itself, straight in the port-67 offer.
#[test]
fn seabios_ipxe_rom_boots_pxelinux_to_its_menu() {
    let machine = Machine::SeaBiosIpxeRom;
    machine.require();
    requires_pxelinux();
    let mut scene = Scene::new("bios-menu", 21);
    pxelinux_root(&scene.root);
    scene.start_rackboot(&["--boot", "bios=pxelinux.0"]);
    scene.start_doctor();
    scene.boot(machine);
    scene.wait_serial(1, MENU_TEXT, BIOS_BOOT_TIMEOUT);
    scene.stop_vm();

    check_pxelinux_menu(&scene);
    check_doctor(&mut scene, &["booted pxelinux.0, then stopped after "]);

    // The DISCOVER is iPXE's (arch 0, user class iPXE); the proxy offer
    // names pxelinux.0 and the server, and offers no address.
    let discover = first_request(&scene, 67, MessageType::Discover, true)
        .unwrap_or_else(|| scene.fail("no DISCOVER with user class iPXE"));
    scene.check(capture::arch(&discover.1) == Some(0), || {
        "iPXE ROM DISCOVER not arch 0".into()
    });
    let (_, offer) = proxy_reply_to(&scene, &discover)
        .unwrap_or_else(|| scene.fail("no proxy offer to the iPXE DISCOVER"));
    scene.check(
        capture::msg_type(&offer) == Some(MessageType::Offer)
            && capture::field_text(offer.fname()) == "pxelinux.0"
            && offer.siaddr() == scene.server()
            && vendor_class_is_pxeclient(&offer)
            && offer.opts().get(OptionCode::VendorExtensions).is_none(),
        || {
            "proxy offer to iPXE: expected file pxelinux.0, siaddr = server, 60 PXEClient, no 43"
                .into()
        },
    );
    let replies = pxe::proxy_lines(&scene.rackboot_log());
    scene.check(
        replies
            .iter()
            .all(|r| r.arch == "Bios" && r.kind == "Offer" && r.file == "pxelinux.0"),
        || format!("rackboot's replies: {replies:?}"),
    );

    pxe::record("seabios_ipxe_discover", Some(&discover.0.payload));
    let request = first_request(&scene, 67, MessageType::Request, true);
    pxe::record(
        "seabios_ipxe_request_67",
        request.as_ref().map(|r| &r.0.payload[..]),
    );
}

// ---------------------------------------------------------------------------
// (b) + (c) OVMF → port 4011 → snponly.efi → its script
// ---------------------------------------------------------------------------

/// EDK2's PXE client gets an offer with siaddr and no option 43, asks on
/// port 4011, boots snponly.efi; that iPXE DHCPs again (user class iPXE)
/// and gets boot.ipxe — fetching snponly.efi once, not in a loop.
#[test]
fn ovmf_asks_on_4011_and_the_chained_ipxe_runs_its_script() {
    let machine = Machine::OvmfPxe;
    machine.require();
    let mut scene = Scene::new("uefi-4011", 22);
    script_root(&scene.root, SNPONLY);
    scene.start_rackboot(&[
        "--boot",
        "x64-uefi=snponly.efi",
        "--ipxe-script",
        "boot.ipxe",
    ]);
    scene.start_doctor();
    scene.boot(machine);
    scene.wait_serial(0, SCRIPT_MARK, UEFI_BOOT_TIMEOUT);
    scene.stop_vm();
    // The firmware's size probe is not a failure; the chain is followed
    // through port 4011 to iPXE's script.
    check_doctor(
        &mut scene,
        &["booted snponly.efi, then stopped after boot.ipxe"],
    );

    let com1 = scene.serial(0);
    for needle in [
        "NBP filename is snponly.efi",
        "iPXE initialising devices",
        "Filename: boot.ipxe",
    ] {
        scene.check(com1.contains(needle), || {
            format!("serial output lacks {needle:?}")
        });
    }

    let (discover, request) = check_edk2_4011_exchange(&scene, "OVMF", 7, "snponly.efi");

    // rackboot's log: offer (X64Uefi, no file), ACK on 4011 with the file,
    // then iPXE's offer with the script; snponly.efi handed out once.
    let log = scene.rackboot_log();
    let replies = pxe::proxy_lines(&log);
    let first_offer = replies
        .iter()
        .position(|r| r.arch == "X64Uefi" && r.kind == "Offer" && r.file.is_empty());
    let ack_at = replies
        .iter()
        .position(|r| r.arch == "X64Uefi" && r.kind == "Ack" && r.file == "snponly.efi");
    let script_at = replies
        .iter()
        .position(|r| r.arch == "X64Uefi" && r.kind == "Offer" && r.file == "boot.ipxe");
    scene.check(
        matches!((first_offer, ack_at, script_at), (Some(o), Some(a), Some(s)) if o < a && a < s),
        || format!("rackboot's replies, expected Offer(no file) < Ack(snponly.efi) < Offer(boot.ipxe): {replies:?}"),
    );
    let snponly_replies = replies.iter().filter(|r| r.file == "snponly.efi").count();
    scene.check(snponly_replies == 1, || {
        format!("snponly.efi handed out {snponly_replies} times: {replies:?}")
    });

    let transfers = pxe::tftp_lines(&log);
    let complete = |file: &str| {
        transfers
            .iter()
            .filter(|t| t.file == file && t.outcome == "Complete")
            .count()
    };
    scene.check(
        complete("snponly.efi") == 1 && complete("boot.ipxe") == 1,
        || format!("expected snponly.efi and boot.ipxe transferred once each: {transfers:?}"),
    );
    // EDK2 asks for the size first (RRQ with tsize, then ERROR 8): at most
    // two requests for the loader, never a third (a chainload loop).
    let rrqs = wire_read_count(&scene, "snponly.efi");
    scene.check((1..=2).contains(&rrqs), || {
        format!("{rrqs} read requests for snponly.efi")
    });
    scene.check_dhcp_server_not_pxe();

    pxe::record("ovmf_x64_discover", Some(&discover.0.payload));
    let request_67 = first_request(&scene, 67, MessageType::Request, false);
    pxe::record(
        "ovmf_x64_request_67",
        request_67.as_ref().map(|r| &r.0.payload[..]),
    );
    pxe::record("ovmf_x64_request_4011", Some(&request.0.payload));
    let ipxe = first_request(&scene, 67, MessageType::Discover, true);
    pxe::record(
        "snponly_x64_discover",
        ipxe.as_ref().map(|r| &r.0.payload[..]),
    );
}

/// UEFI HTTP Boot: OVMF's HttpBootDxe gets an `HTTPClient` proxy offer
/// whose URL rackboot completed from a path, fetches snponly.efi from
/// rackboot's HTTP server and starts it (iPXE then runs its script).
#[test]
fn ovmf_http_boot_fetches_ipxe_from_rackboots_http_server() {
    let machine = Machine::OvmfHttp;
    machine.require();
    let mut scene = Scene::new("uefi-http", 23);
    script_root(&scene.root, SNPONLY);
    let config = scene.root.parent().unwrap().join("http-boot.toml");
    std::fs::write(
        &config,
        "[[boot]]\narch = \"x64-uefi\"\nfile = \"snponly.efi\"\nhttp_url = \"/snponly.efi\"\n",
    )
    .unwrap();
    let http = format!("{}:8080", scene.server());
    scene.start_rackboot(&[
        "--config",
        config.to_str().unwrap(),
        "--ipxe-script",
        "boot.ipxe",
        "--http-listen",
        &http,
    ]);
    scene.boot(machine);
    scene.wait_serial(0, SCRIPT_MARK, UEFI_BOOT_TIMEOUT);
    scene.stop_vm();

    let com1 = scene.serial(0);
    scene.check(com1.contains("iPXE initialising devices"), || {
        "serial output lacks the iPXE banner".into()
    });
    let server = scene.server();
    let discover = first_request(&scene, 67, MessageType::Discover, false)
        .unwrap_or_else(|| scene.fail("no DISCOVER from OVMF"));
    scene.check(capture::arch(&discover.1) == Some(16), || {
        format!(
            "OVMF DISCOVER arch {:?}, not 16 (HTTP)",
            capture::arch(&discover.1)
        )
    });
    let (_, offer) = proxy_reply_to(&scene, &discover)
        .unwrap_or_else(|| scene.fail("no proxy offer to OVMF's HTTP DISCOVER"));
    let url = format!("http://{server}:8080/snponly.efi");
    scene.check(capture::field_text(offer.fname()) == url, || {
        format!(
            "offer file {:?}, expected {url}",
            capture::field_text(offer.fname())
        )
    });
    let log = scene.rackboot_log();
    scene.check(
        log.lines().any(|l| {
            l.contains("http")
                && l.contains("snponly.efi")
                && l.contains("status=200")
                && l.contains("complete")
        }),
        || "no complete HTTP response for snponly.efi in rackboot's log".into(),
    );
    scene.check_dhcp_server_not_pxe();
}

/// The script of the iPXE-over-HTTP boot: a kernel (iPXE's own `ipxe.lkrn`,
/// a bzImage that prints its banner when started) and an initrd, both by
/// HTTP from the server that sent the offer, as operators write it.
const HTTP_BOOT_IPXE: &str = "#!ipxe
echo rackboot-http-script
kernel http://${next-server}:8080/ipxe.lkrn
initrd http://${next-server}:8080/initrd.img
boot
";
const IPXE_LKRN: (&str, &str) = ("/usr/lib/ipxe/ipxe.lkrn", "ipxe");
const IPXE_BANNER: &str = "iPXE initialising devices";

/// The BIOS iPXE ROM runs a script that loads a kernel and an initrd from
/// rackboot over HTTP and boots them: the kernel (a second iPXE) starts, and
/// rackboot logs both responses complete with the exact sizes.
#[test]
fn seabios_ipxe_rom_loads_kernel_and_initrd_over_http() {
    let machine = Machine::SeaBiosIpxeRom;
    machine.require();
    pxe::require_file(IPXE_LKRN.0, IPXE_LKRN.1);
    let mut scene = Scene::new("bios-http", 27);
    pxe::install(&scene.root, &[IPXE_LKRN, UNDIONLY]);
    std::fs::write(scene.root.join("boot.ipxe"), HTTP_BOOT_IPXE).expect("write boot.ipxe");
    // An initrd of 3 MiB + 1 byte of varied bytes: large enough for several
    // windows of TCP, odd-sized so a short body would show.
    let initrd: Vec<u8> = (0..3 * 1024 * 1024 + 1u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(scene.root.join("initrd.img"), &initrd).expect("write initrd.img");
    let http = format!("{}:8080", scene.server());
    scene.start_rackboot(&[
        "--boot",
        "bios=undionly.kpxe",
        "--ipxe-script",
        "boot.ipxe",
        "--http-listen",
        &http,
    ]);
    scene.start_doctor();
    scene.boot(machine);
    scene.wait_serial(0, "rackboot-http-script", BIOS_BOOT_TIMEOUT);
    // The second iPXE's banner is the kernel starting.
    let started = std::time::Instant::now();
    while scene.serial(0).matches(IPXE_BANNER).count() < 2 {
        if started.elapsed() > BIOS_BOOT_TIMEOUT {
            scene.fail("the kernel loaded over HTTP never started (one iPXE banner only)");
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    scene.stop_vm();

    let log = scene.rackboot_log();
    let lkrn_len = std::fs::metadata(IPXE_LKRN.0).expect("ipxe.lkrn").len();
    for (file, len) in [("ipxe.lkrn", lkrn_len), ("initrd.img", initrd.len() as u64)] {
        let complete = log.lines().filter(|l| {
            pxe::field(l, "path").as_deref() == Some(file)
                && pxe::field(l, "method").as_deref() == Some("GET")
                && pxe::field(l, "status").as_deref() == Some("200")
                && pxe::field(l, "bytes") == Some(len.to_string())
                && pxe::field(l, "outcome").as_deref() == Some("complete")
        });
        scene.check(complete.count() >= 1, || {
            format!("no complete 200 GET of {file} ({len} bytes) in rackboot's log")
        });
    }
    // Only the script went over TFTP; the kernel and initrd never did.
    scene.check(wire_read_count(&scene, "boot.ipxe") == 1, || {
        "boot.ipxe not read exactly once over TFTP".into()
    });
    scene.check(
        wire_read_count(&scene, "ipxe.lkrn") == 0 && wire_read_count(&scene, "initrd.img") == 0,
        || "the kernel or initrd went over TFTP".into(),
    );
    scene.check_dhcp_server_not_pxe();
    // doctor follows the HTTP requests too: the script over TFTP, then
    // the kernel and the initrd (the last file) over HTTP, every byte.
    let bytes = HTTP_BOOT_IPXE.len() as u64 + lkrn_len + initrd.len() as u64;
    check_doctor(
        &mut scene,
        &[&format!(
            "booted boot.ipxe, then stopped after initrd.img (3 files, {bytes} bytes)"
        )],
    );
}

const LPXELINUX: (&str, &str) = ("/usr/lib/PXELINUX/lpxelinux.0", "pxelinux");

/// lpxelinux.0 (pxelinux with an HTTP client) over TFTP, then a
/// configuration whose kernel and initrd are `http://` URLs on rackboot:
/// the README's second HTTP example, booted. The kernel (iPXE's
/// `ipxe.lkrn`) starts, and rackboot logs both HTTP responses complete.
#[test]
fn lpxelinux_loads_kernel_and_initrd_over_http() {
    let machine = Machine::SeaBiosIpxeRom;
    machine.require();
    pxe::require_file(LPXELINUX.0, LPXELINUX.1);
    pxe::require_file(IPXE_LKRN.0, IPXE_LKRN.1);
    let mut scene = Scene::new("lpxelinux", 28);
    pxe::install(&scene.root, &[LPXELINUX, IPXE_LKRN]);
    pxe::install(&scene.root, &SYSLINUX_MODULES[..1]);
    let http = format!("{}:8080", scene.server());
    std::fs::create_dir(scene.root.join("pxelinux.cfg")).expect("pxelinux.cfg");
    std::fs::write(
        scene.root.join("pxelinux.cfg/default"),
        format!("DEFAULT http\nLABEL http\n  KERNEL http://{http}/ipxe.lkrn\n  INITRD http://{http}/initrd.img\n"),
    )
    .expect("write default");
    let initrd = vec![0x5au8; 1 << 20];
    std::fs::write(scene.root.join("initrd.img"), &initrd).expect("write initrd.img");
    scene.start_rackboot(&["--boot", "bios=lpxelinux.0", "--http-listen", &http]);
    scene.boot(machine);
    // The ROM's banner, then the kernel's (a second iPXE) after pxelinux.
    let started = std::time::Instant::now();
    while scene.serial(0).matches(IPXE_BANNER).count() < 2 {
        if started.elapsed() > BIOS_BOOT_TIMEOUT {
            scene.fail("the kernel lpxelinux loaded over HTTP never started");
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    scene.stop_vm();

    let log = scene.rackboot_log();
    let lkrn_len = std::fs::metadata(IPXE_LKRN.0).expect("ipxe.lkrn").len();
    for (file, len) in [("ipxe.lkrn", lkrn_len), ("initrd.img", initrd.len() as u64)] {
        let complete = log.lines().filter(|l| {
            pxe::field(l, "path").as_deref() == Some(file)
                && pxe::field(l, "status").as_deref() == Some("200")
                && pxe::field(l, "bytes") == Some(len.to_string())
                && pxe::field(l, "outcome").as_deref() == Some("complete")
        });
        scene.check(complete.count() >= 1, || {
            format!("no complete 200 of {file} ({len} bytes) in rackboot's log")
        });
    }
    let transfers = pxe::tftp_lines(&log);
    for file in ["lpxelinux.0", "ldlinux.c32", "pxelinux.cfg/default"] {
        scene.check(
            transfers
                .iter()
                .any(|t| t.file == file && t.outcome == "Complete"),
            || format!("{file} not transferred over TFTP: {transfers:?}"),
        );
    }
    scene.check(
        wire_read_count(&scene, "ipxe.lkrn") == 0 && wire_read_count(&scene, "initrd.img") == 0,
        || "the kernel or initrd went over TFTP".into(),
    );
}

/// `rackboot status --json` from the control socket: the VM's row.
fn status_row(socket: &Path) -> Option<serde_json::Value> {
    let out = std::process::Command::new(pxe::RACKBOOT)
        .args(["status", "--json", "--control-socket"])
        .arg(socket)
        .output()
        .expect("run rackboot status");
    assert!(
        out.status.success(),
        "rackboot status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    doc["machines"]
        .as_array()
        .expect("machines")
        .iter()
        .find(|m| m["mac"] == pxe::qemu::MAC)
        .cloned()
}

/// A row's stages as (name, ms from the boot's first event).
fn stages_of(row: &serde_json::Value) -> Vec<(String, u64)> {
    row["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().to_owned(),
                s["at_ms"].as_u64().unwrap(),
            )
        })
        .collect()
}

const STAGES: [&str; 6] = ["offer", "ack", "boot_file", "config", "kernel", "initrd"];

/// Stages listed in their order and reached in that order.
fn check_stage_order(scene: &Scene, stages: &[(String, u64)]) {
    let ranks: Vec<usize> = stages
        .iter()
        .map(|(name, _)| STAGES.iter().position(|s| s == name).expect("known stage"))
        .collect();
    scene.check(ranks.windows(2).all(|w| w[0] < w[1]), || {
        format!("stages out of order: {stages:?}")
    });
    scene.check(stages.windows(2).all(|w| w[0].1 <= w[1].1), || {
        format!("stages reached out of order: {stages:?}")
    });
}

/// `rackboot status` during and after a BIOS boot (the iPXE ROM, then
/// pxelinux.0, its configuration, a kernel and an initrd, all over TFTP):
/// the VM's row, by MAC, shows each stage as it is reached, in order, and
/// at the end all of them with the machine's address and architecture.
/// The ROM boots the offer's file without asking on 4011, so the files,
/// requested by address only, reach the MAC's row through the server's
/// neighbour table, and there is no `ack` stage.
#[test]
fn status_follows_a_bios_boot_to_its_kernel_and_initrd() {
    let machine = Machine::SeaBiosIpxeRom;
    machine.require();
    requires_pxelinux();
    pxe::require_file(IPXE_LKRN.0, IPXE_LKRN.1);
    let mut scene = Scene::new("status", 31);
    pxe::install(&scene.root, &[PXELINUX, IPXE_LKRN]);
    pxe::install(&scene.root, &SYSLINUX_MODULES[..1]);
    std::fs::create_dir(scene.root.join("pxelinux.cfg")).expect("pxelinux.cfg");
    std::fs::write(
        scene.root.join("pxelinux.cfg/default"),
        // Three seconds at pxelinux's prompt: a view of the boot under
        // way, with its configuration read and no kernel yet.
        "PROMPT 1\nTIMEOUT 30\nDEFAULT linux\nLABEL linux\n  KERNEL ipxe.lkrn\n  INITRD initrd.img\n",
    )
    .expect("write default");
    std::fs::write(scene.root.join("initrd.img"), vec![0x5au8; 1 << 20]).expect("initrd.img");
    let socket = scene.dir().join("control.sock");
    let socket_arg = socket.display().to_string();
    scene.start_rackboot(&["--boot", "bios=pxelinux.0", "--control-socket", &socket_arg]);
    scene.boot(machine);
    // During the boot: every half second, until the kernel (a second
    // iPXE) prints its banner.
    let mut seen: Vec<Vec<(String, u64)>> = Vec::new();
    let started = std::time::Instant::now();
    while scene.serial(0).matches(IPXE_BANNER).count() < 2 {
        if started.elapsed() > BIOS_BOOT_TIMEOUT {
            scene.fail(&format!(
                "the kernel never started; status rows seen: {seen:?}"
            ));
        }
        if let Some(row) = status_row(&socket) {
            let stages = stages_of(&row);
            if seen.last() != Some(&stages) {
                eprintln!("[status] {stages:?}");
                seen.push(stages);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    scene.stop_vm();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let Some(row) = status_row(&socket) else {
        scene.fail("the VM's MAC is not in `rackboot status`");
    };
    let last = stages_of(&row);
    eprintln!("[status] after: {row:#}");
    for stages in seen.iter().chain([&last]) {
        check_stage_order(&scene, stages);
    }
    // Each view extends the one before: stages are only ever added.
    let mut views = seen.clone();
    views.push(last.clone());
    for pair in views.windows(2) {
        let names = |v: &[(String, u64)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        let later = names(&pair[1]);
        scene.check(names(&pair[0]).iter().all(|n| later.contains(n)), || {
            format!(
                "a later view lost a stage: {:?} then {:?}",
                pair[0], pair[1]
            )
        });
    }
    let at_prompt = ["offer", "boot_file", "config"];
    scene.check(
        seen.iter()
            .any(|s| s.iter().map(|(n, _)| n.as_str()).eq(at_prompt)),
        || format!("no view caught the boot at pxelinux's prompt: {seen:?}"),
    );
    let names: Vec<&str> = last.iter().map(|(n, _)| n.as_str()).collect();
    scene.check(
        names == ["offer", "boot_file", "config", "kernel", "initrd"],
        || format!("stages at the end: {last:?}"),
    );
    scene.check(row["arch"] == "bios", || format!("arch: {row}"));
    scene.check(row["boot_file"] == "pxelinux.0", || {
        format!("boot file: {row}")
    });
    let vm_ip = row["ip"].as_str().unwrap_or("");
    scene.check(vm_ip.starts_with("10.214.31."), || format!("ip: {row}"));
    scene.check(row["other_files"].as_u64() >= Some(1), || {
        format!("ldlinux.c32 counts as another file: {row}")
    });
    // The plain table shows the same row.
    let out = std::process::Command::new(pxe::RACKBOOT)
        .args(["status", "--control-socket", &socket_arg])
        .output()
        .expect("rackboot status");
    let table = String::from_utf8_lossy(&out.stdout);
    eprintln!("{table}");
    let line = table.lines().find(|l| l.starts_with(pxe::qemu::MAC));
    scene.check(
        line.is_some_and(|l| l.contains(vm_ip) && l.contains("bios")),
        || format!("the table lacks the VM's row:\n{table}"),
    );
}

// ---------------------------------------------------------------------------
// (c) iPXE as the firmware's own network boot gets the script directly
// ---------------------------------------------------------------------------

/// With an ipxe_script the BIOS iPXE ROM gets boot.ipxe in the first offer:
/// the configured undionly.kpxe is never fetched.
#[test]
fn seabios_ipxe_rom_gets_the_script_not_a_loader() {
    let machine = Machine::SeaBiosIpxeRom;
    machine.require();
    let mut scene = Scene::new("bios-script", 24);
    script_root(&scene.root, UNDIONLY);
    scene.start_rackboot(&["--boot", "bios=undionly.kpxe", "--ipxe-script", "boot.ipxe"]);
    scene.boot(machine);
    scene.wait_serial(0, SCRIPT_MARK, BIOS_BOOT_TIMEOUT);
    scene.stop_vm();

    scene.check(wire_read_count(&scene, "undionly.kpxe") == 0, || {
        "iPXE fetched undionly.kpxe".into()
    });
    scene.check(wire_read_count(&scene, "boot.ipxe") == 1, || {
        "boot.ipxe not read exactly once".into()
    });
    let replies = pxe::proxy_lines(&scene.rackboot_log());
    scene.check(
        !replies.is_empty()
            && replies
                .iter()
                .all(|r| r.arch == "Bios" && r.kind == "Offer" && r.file == "boot.ipxe"),
        || format!("expected only Bios offers naming boot.ipxe: {replies:?}"),
    );
    scene.check_dhcp_server_not_pxe();
}

/// OVMF with QEMU's e1000 ROM: the ROM's EFI driver is iPXE, which does the
/// firmware's network boot itself (arch 7, user class iPXE) and gets the
/// script at once, without port 4011 and without snponly.efi.
#[test]
fn ovmf_ipxe_rom_gets_the_script_not_a_loader() {
    let machine = Machine::OvmfIpxeRom;
    machine.require();
    let mut scene = Scene::new("uefi-script", 25);
    script_root(&scene.root, SNPONLY);
    scene.start_rackboot(&[
        "--boot",
        "x64-uefi=snponly.efi",
        "--ipxe-script",
        "boot.ipxe",
    ]);
    scene.boot(machine);
    scene.wait_serial(0, SCRIPT_MARK, UEFI_BOOT_TIMEOUT);
    scene.stop_vm();

    scene.check(wire_read_count(&scene, "snponly.efi") == 0, || {
        "iPXE fetched snponly.efi".into()
    });
    scene.check(wire_read_count(&scene, "boot.ipxe") == 1, || {
        "boot.ipxe not read exactly once".into()
    });
    scene.check(
        scene
            .capture
            .packets()
            .iter()
            .all(|s| s.dst.port() != 4011 && s.src.port() != 4011),
        || "port 4011 used, though the offer named the file".into(),
    );
    let replies = pxe::proxy_lines(&scene.rackboot_log());
    scene.check(
        !replies.is_empty()
            && replies
                .iter()
                .all(|r| r.arch == "X64Uefi" && r.kind == "Offer" && r.file == "boot.ipxe"),
        || format!("expected only X64Uefi offers naming boot.ipxe: {replies:?}"),
    );
    scene.check_dhcp_server_not_pxe();

    let discover = first_request(&scene, 67, MessageType::Discover, true);
    pxe::record(
        "ipxe_efi_rom_x64_discover",
        discover.as_ref().map(|r| &r.0.payload[..]),
    );
}

// ---------------------------------------------------------------------------
// (d) The BIOS boot of (a) from a dnsmasq.conf
// ---------------------------------------------------------------------------

/// tests/pxe/dnsmasq-proxy.conf, a typical proxyDHCP dnsmasq.conf (typo
/// `pxlinux.0` in dhcp-boot included), run through `--dnsmasq-conf` with
/// its tftp-root and subnet pointed at the test's. The x86PC pxe-service
/// names pxelinux.0, which is what BIOS clients must boot.
#[test]
fn seabios_boots_pxelinux_menu_from_a_dnsmasq_conf() {
    let machine = Machine::SeaBiosIpxeRom;
    machine.require();
    requires_pxelinux();
    let mut scene = Scene::new("dnsmasq-conf", 23);
    pxelinux_root(&scene.root);
    let template = include_str!("pxe/dnsmasq-proxy.conf");
    assert!(
        template.contains("tftp-root=/tftpboot")
            && template.contains("dhcp-range=10.10.10.0,proxy")
    );
    let conf = template
        .replace(
            "tftp-root=/tftpboot",
            &format!("tftp-root={}", scene.root.display()),
        )
        .replace(
            "dhcp-range=10.10.10.0,proxy",
            &format!("dhcp-range=10.214.{}.0,proxy", scene.ns.n),
        );
    let conf_path = scene.dir().join("dnsmasq.conf");
    std::fs::write(&conf_path, conf).expect("write dnsmasq.conf");
    if std::env::var("RACKBOOT_PXE_PROXY").is_ok_and(|v| v == "dnsmasq") {
        scene.start_dnsmasq_proxy(&conf_path);
    } else {
        let conf_arg = conf_path.display().to_string();
        scene.start_rackboot_raw(&["--dnsmasq-conf", &conf_arg]);
    }
    scene.boot(machine);
    scene.wait_serial(1, MENU_TEXT, BIOS_BOOT_TIMEOUT);
    scene.stop_vm();

    check_pxelinux_menu(&scene);

    // Given a menu (as dnsmasq sends; rackboot gives iPXE the file at
    // once), iPXE asks on 4011 for item 0x8000: this fixture is recorded
    // with RACKBOOT_PXE_PROXY=dnsmasq.
    let item = first_request(&scene, 4011, MessageType::Request, true);
    pxe::record(
        "seabios_ipxe_request_4011_item",
        item.as_ref().map(|r| &r.0.payload[..]),
    );
}

// ---------------------------------------------------------------------------
// (f) ARM64 UEFI (AAVMF) → GRUB's network image → its grub.cfg
// ---------------------------------------------------------------------------

/// Debian's GRUB network image for ARM64, unpacked from the arm64 package
/// grub-efi-arm64-bin by .ci/install.sh (nothing foreign is installed).
const GRUBNET_ARM64: (&str, &str) = (
    "/usr/local/share/rackboot-test/grubnetaa64.efi",
    "grub-efi-arm64-bin:arm64 (unpacked with apt-get download + dpkg -x)",
);
const GRUB_MARK: &str = "rackboot-arm64-grub";
/// grubnetaa64.efi has prefix `/grub` on the server it came from and an
/// embedded config that sources `$prefix/arm64-efi/grub.cfg` if it exists,
/// `$prefix/grub.cfg` otherwise; `sleep` keeps GRUB there.
const GRUB_CFG_PATH: &str = "grub/grub.cfg";
const GRUB_CFG: &str = "echo rackboot-arm64-grub\nsleep 600\n";

/// AAVMF's PXE client (arch 11) gets rackboot's proxy offer beside the
/// address-only DHCP server, asks on port 4011, boots GRUB's network image
/// over TFTP, and GRUB reads its grub.cfg from rackboot. Power-on to the
/// marker takes about 12 s under TCG on an idle machine.
#[test]
fn aavmf_arm64_boots_grub_netboot_image_through_rackboot() {
    let machine = Machine::AavmfArm64Pxe;
    machine.require();
    pxe::require_file(GRUBNET_ARM64.0, GRUBNET_ARM64.1);
    let mut scene = Scene::new("arm64-grub", 29);
    pxe::install(&scene.root, &[GRUBNET_ARM64]);
    std::fs::create_dir(scene.root.join("grub")).expect("grub dir");
    std::fs::write(scene.root.join(GRUB_CFG_PATH), GRUB_CFG).expect("write grub.cfg");
    scene.start_rackboot(&["--boot", "arm64-uefi=grubnetaa64.efi"]);
    scene.boot(machine);
    scene.wait_serial(0, GRUB_MARK, ARM64_BOOT_TIMEOUT);
    scene.stop_vm();

    let com1 = scene.serial(0);
    for needle in [
        "NBP filename is grubnetaa64.efi",
        "NBP file downloaded successfully",
        "Welcome to GRUB!",
    ] {
        scene.check(com1.contains(needle), || {
            format!("serial output lacks {needle:?}")
        });
    }

    let (discover, request) = check_edk2_4011_exchange(&scene, "AAVMF", 11, "grubnetaa64.efi");
    scene.check(
        capture::class_id(&discover.1).is_some_and(|c| c.starts_with("PXEClient:Arch:00011")),
        || {
            format!(
                "AAVMF DISCOVER: vendor class {:?}, expected PXEClient:Arch:00011",
                capture::class_id(&discover.1)
            )
        },
    );

    // rackboot's log: offer (Arm64Uefi, no file) then the ACK with GRUB,
    // handed out once; GRUB transferred whole once, then its grub.cfg.
    let log = scene.rackboot_log();
    let replies = pxe::proxy_lines(&log);
    let offer_at = replies
        .iter()
        .position(|r| r.arch == "Arm64Uefi" && r.kind == "Offer" && r.file.is_empty());
    let ack_at = replies
        .iter()
        .position(|r| r.arch == "Arm64Uefi" && r.kind == "Ack" && r.file == "grubnetaa64.efi");
    scene.check(
        matches!((offer_at, ack_at), (Some(o), Some(a)) if o < a),
        || format!("rackboot's replies, expected Offer(Arm64Uefi, no file) < Ack(grubnetaa64.efi): {replies:?}"),
    );
    let grub_replies = replies
        .iter()
        .filter(|r| r.file == "grubnetaa64.efi")
        .count();
    scene.check(grub_replies == 1, || {
        format!("grubnetaa64.efi handed out {grub_replies} times: {replies:?}")
    });

    let transfers = pxe::tftp_lines(&log);
    let is_cfg = |file: &str| file.trim_start_matches('/') == GRUB_CFG_PATH;
    let grub_done = transfers
        .iter()
        .position(|t| t.file == "grubnetaa64.efi" && t.outcome == "Complete");
    let cfg_done = transfers
        .iter()
        .position(|t| is_cfg(&t.file) && t.outcome == "Complete");
    scene.check(
        matches!((grub_done, cfg_done), (Some(g), Some(c)) if g < c),
        || {
            format!(
                "expected grubnetaa64.efi transferred whole, then {GRUB_CFG_PATH}: {transfers:?}"
            )
        },
    );
    let complete = |wanted: &dyn Fn(&str) -> bool| {
        transfers
            .iter()
            .filter(|t| wanted(&t.file) && t.outcome == "Complete")
            .count()
    };
    let grub_complete = complete(&|f: &str| f == "grubnetaa64.efi");
    let cfg_complete = complete(&is_cfg);
    scene.check(grub_complete == 1 && cfg_complete == 1, || {
        format!("expected grubnetaa64.efi and {GRUB_CFG_PATH} transferred once each: {transfers:?}")
    });
    // EDK2 asks for the size first (tsize probe), then the file: never a
    // third request (a boot loop).
    let rrqs = wire_read_count(&scene, "grubnetaa64.efi");
    scene.check((1..=2).contains(&rrqs), || {
        format!("{rrqs} read requests for grubnetaa64.efi")
    });
    scene.check_dhcp_server_not_pxe();

    pxe::record("aavmf_arm64_discover", Some(&discover.0.payload));
    let request_67 = first_request(&scene, 67, MessageType::Request, false);
    pxe::record(
        "aavmf_arm64_request_67",
        request_67.as_ref().map(|r| &r.0.payload[..]),
    );
    pxe::record("aavmf_arm64_request_4011", Some(&request.0.payload));
}

// ---------------------------------------------------------------------------
// The policy against the recorded firmware requests (no VM)
// ---------------------------------------------------------------------------

const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 214, 21, 1);

fn recorded(name: &str) -> Vec<u8> {
    let path = format!("{}/{name}.bin", pxe::RECORDED_DIR);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{path}: {e}; record it with RACKBOOT_RECORD_FIXTURES=1 cargo test --test pxe_boot -- --test-threads=1 (root)"
        )
    })
}

fn decode(bytes: &[u8]) -> Message {
    Message::decode(&mut Decoder::new(bytes)).expect("dhcproto decodes it")
}

fn raw_option(packet: &[u8], code: u8) -> Option<Vec<u8>> {
    let mut i = 240;
    while i < packet.len() {
        match packet[i] {
            0 => i += 1,
            255 => return None,
            c => {
                let len = usize::from(*packet.get(i + 1)?);
                let data = packet.get(i + 2..i + 2 + len)?;
                if c == code {
                    return Some(data.to_vec());
                }
                i += 2 + len;
            }
        }
    }
    None
}

/// Sub-options of an option 43 payload.
fn sub_options(payload: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut found = Vec::new();
    let mut i = 0;
    while i + 1 < payload.len() && payload[i] != 255 {
        let len = usize::from(payload[i + 1]);
        found.push((
            payload[i],
            payload[i + 2..(i + 2 + len).min(payload.len())].to_vec(),
        ));
        i += 2 + len;
    }
    found
}

/// bios=pxelinux.0 and x64-uefi=snponly.efi, with or without the script.
fn recorded_policy(script: bool) -> Policy {
    let mut config = ProxyConfig {
        boot: vec![
            BootEntry::new(Arch::Bios, "pxelinux.0"),
            BootEntry::new(Arch::X64Uefi, "snponly.efi"),
        ],
        ..ProxyConfig::default()
    };
    if script {
        config.proxy.ipxe_script = Some("boot.ipxe".into());
    }
    Policy::new(config).expect("valid config")
}

/// What a recorded request must get.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Silent(Silence),
    /// An offer: file (None: no file) and whether option 43 is there.
    Offer {
        file: Option<&'static str>,
        menu: bool,
    },
    /// A port-4011 ack with this file.
    Ack {
        file: &'static str,
    },
}

struct RecordedCase {
    fixture: &'static str,
    /// What the fixture must be: option 93, whether it is iPXE.
    arch: u16,
    ipxe: bool,
    message: MessageType,
    port: ServerPort,
    /// Source port of the request (4011 requests are answered there).
    source_port: u16,
    plain: Expect,
    scripted: Expect,
}

const RECORDED_CASES: &[RecordedCase] = &[
    RecordedCase {
        fixture: "seabios_ipxe_discover",
        arch: 0,
        ipxe: true,
        message: MessageType::Discover,
        port: ServerPort::Dhcp,
        source_port: 68,
        plain: Expect::Offer {
            file: Some("pxelinux.0"),
            menu: false,
        },
        scripted: Expect::Offer {
            file: Some("boot.ipxe"),
            menu: false,
        },
    },
    RecordedCase {
        fixture: "seabios_ipxe_request_67",
        arch: 0,
        ipxe: true,
        message: MessageType::Request,
        port: ServerPort::Dhcp,
        source_port: 68,
        plain: Expect::Silent(Silence::RequestOn67),
        scripted: Expect::Silent(Silence::RequestOn67),
    },
    RecordedCase {
        fixture: "seabios_ipxe_request_4011_item",
        arch: 0,
        ipxe: true,
        message: MessageType::Request,
        port: ServerPort::Pxe,
        source_port: 68,
        plain: Expect::Ack { file: "pxelinux.0" },
        scripted: Expect::Ack { file: "boot.ipxe" },
    },
    RecordedCase {
        fixture: "ovmf_x64_discover",
        arch: 7,
        ipxe: false,
        message: MessageType::Discover,
        port: ServerPort::Dhcp,
        source_port: 68,
        plain: Expect::Offer {
            file: None,
            menu: false,
        },
        scripted: Expect::Offer {
            file: None,
            menu: false,
        },
    },
    RecordedCase {
        fixture: "ovmf_x64_request_67",
        arch: 7,
        ipxe: false,
        message: MessageType::Request,
        port: ServerPort::Dhcp,
        source_port: 68,
        plain: Expect::Silent(Silence::RequestOn67),
        scripted: Expect::Silent(Silence::RequestOn67),
    },
    RecordedCase {
        fixture: "ovmf_x64_request_4011",
        arch: 7,
        ipxe: false,
        message: MessageType::Request,
        port: ServerPort::Pxe,
        source_port: 4011,
        plain: Expect::Ack {
            file: "snponly.efi",
        },
        scripted: Expect::Ack {
            file: "snponly.efi",
        },
    },
    RecordedCase {
        fixture: "snponly_x64_discover",
        arch: 7,
        ipxe: true,
        message: MessageType::Discover,
        port: ServerPort::Dhcp,
        source_port: 68,
        // Without a script iPXE gets itself again: the loop the script
        // setting exists to break.
        plain: Expect::Offer {
            file: Some("snponly.efi"),
            menu: false,
        },
        scripted: Expect::Offer {
            file: Some("boot.ipxe"),
            menu: false,
        },
    },
    RecordedCase {
        fixture: "ipxe_efi_rom_x64_discover",
        arch: 7,
        ipxe: true,
        message: MessageType::Discover,
        port: ServerPort::Dhcp,
        source_port: 68,
        plain: Expect::Offer {
            file: Some("snponly.efi"),
            menu: false,
        },
        scripted: Expect::Offer {
            file: Some("boot.ipxe"),
            menu: false,
        },
    },
];

fn check_recorded(case: &RecordedCase, script: bool) {
    let name = case.fixture;
    let bytes = recorded(name);
    let asked = decode(&bytes);
    // The fixture is what its name says.
    assert_eq!(asked.opcode(), Opcode::BootRequest, "{name}");
    assert_eq!(
        asked.chaddr().get(..6),
        Some(&MAC_BYTES[..]),
        "{name}: the test VM's MAC"
    );
    assert_eq!(
        capture::msg_type(&asked),
        Some(case.message),
        "{name}: message type"
    );
    assert_eq!(capture::arch(&asked), Some(case.arch), "{name}: option 93");
    assert_eq!(
        capture::user_class(&asked).as_deref() == Some("iPXE"),
        case.ipxe,
        "{name}: user class"
    );
    assert!(
        // iPXE's boot-server request says just `PXEClient`.
        capture::class_id(&asked).is_some_and(|c| c.starts_with("PXEClient")),
        "{name}: option 60 {:?}",
        capture::class_id(&asked)
    );
    let source_ip = if asked.ciaddr().is_unspecified() {
        Ipv4Addr::UNSPECIFIED
    } else {
        asked.ciaddr()
    };
    let source = SocketAddrV4::new(source_ip, case.source_port);
    let request = Request {
        bytes: &bytes,
        port: case.port,
        source,
        local_addr: LOCAL,
    };

    let policy = recorded_policy(script);
    let expect = if script { case.scripted } else { case.plain };
    let mut out = [0u8; MAX_REPLY_LEN];
    let result = policy.answer(&request, &mut out);
    let ctx = format!(
        "{name} ({})",
        if script {
            "with ipxe_script"
        } else {
            "no ipxe_script"
        }
    );
    let reply = match (expect, result) {
        (Expect::Silent(why), Err(got)) => {
            assert_eq!(got, why, "{ctx}");
            return;
        }
        (Expect::Silent(why), Ok(reply)) => {
            panic!("{ctx}: expected silence ({why}), got {reply:?}")
        }
        (_, Err(got)) => panic!("{ctx}: expected {expect:?}, got silence: {got}"),
        (_, Ok(reply)) => reply,
    };
    let bytes_out = &out[..reply.len];
    let m = decode(bytes_out);

    // Every proxy reply.
    assert_eq!(m.opcode(), Opcode::BootReply, "{ctx}");
    assert_eq!(m.xid(), asked.xid(), "{ctx}: xid echoed");
    assert_eq!(m.chaddr(), asked.chaddr(), "{ctx}: chaddr echoed");
    // A proxy never offers an address; the boot server's ACK echoes the
    // client's own in ciaddr (PXE 2.1, as dnsmasq and pixiecore send it).
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED, "{ctx}: yiaddr");
    let arch = if case.arch == 0 {
        Arch::Bios
    } else {
        Arch::X64Uefi
    };
    assert_eq!(reply.arch, arch, "{ctx}");
    assert_eq!(
        m.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(LOCAL)),
        "{ctx}: option 54"
    );
    assert!(
        vendor_class_is_pxeclient(&m),
        "{ctx}: option 60 {:?}",
        capture::class_id(&m)
    );
    for lease in [
        OptionCode::AddressLeaseTime,
        OptionCode::SubnetMask,
        OptionCode::Router,
    ] {
        assert!(
            m.opts().get(lease).is_none(),
            "{ctx}: {lease:?} in a proxy reply"
        );
    }
    match raw_option(&bytes, 97) {
        Some(id) if id.len() == 17 && id[0] == 0 => {
            assert_eq!(
                raw_option(bytes_out, 97),
                Some(id),
                "{ctx}: option 97 echoed"
            )
        }
        _ => {}
    }
    let file = capture::field_text(m.fname());
    let vendor = raw_option(bytes_out, 43);

    match expect {
        Expect::Offer { file: want, menu } => {
            assert_eq!(reply.kind, ReplyKind::Offer, "{ctx}");
            assert_eq!(capture::msg_type(&m), Some(MessageType::Offer), "{ctx}");
            assert_eq!(m.ciaddr(), Ipv4Addr::UNSPECIFIED, "{ctx}: ciaddr");
            assert!(m.flags().broadcast(), "{ctx}: broadcast flag");
            assert_eq!(reply.destination, Destination::Broadcast68, "{ctx}");
            assert_eq!(reply.source_port, ServerPort::Dhcp, "{ctx}");
            assert_eq!(file, want.unwrap_or(""), "{ctx}: file");
            // UEFI (no file yet) and direct files: siaddr names the server.
            assert_eq!(m.siaddr(), LOCAL, "{ctx}: siaddr");
            assert_eq!(vendor.is_some(), menu, "{ctx}: option 43 {vendor:?}");
        }
        Expect::Ack { file: want } => {
            assert_eq!(reply.kind, ReplyKind::Ack, "{ctx}");
            assert_eq!(capture::msg_type(&m), Some(MessageType::Ack), "{ctx}");
            assert_eq!(m.ciaddr(), asked.ciaddr(), "{ctx}: ciaddr echoed");
            assert_eq!(
                reply.source_port,
                ServerPort::Pxe,
                "{ctx}: answered from 4011"
            );
            assert_eq!(reply.destination, Destination::Unicast(source), "{ctx}");
            assert_eq!(file, want, "{ctx}: file");
            assert_eq!(m.siaddr(), LOCAL, "{ctx}: siaddr");
            assert_eq!(
                capture::field_text(m.sname()),
                LOCAL.to_string(),
                "{ctx}: sname"
            );
            // 43.71 echoes the boot item the client asked for, if any.
            let asked_item = raw_option(&bytes, 43)
                .and_then(|v| sub_options(&v).into_iter().find(|(c, _)| *c == 71))
                .map(|(_, d)| d);
            let echoed = vendor
                .as_deref()
                .and_then(|v| sub_options(v).into_iter().find(|(c, _)| *c == 71))
                .map(|(_, d)| d);
            assert_eq!(echoed, asked_item, "{ctx}: 43.71");
        }
        Expect::Silent(_) => unreachable!(),
    }
}

/// Each recorded firmware request through `Policy::answer`, decoded with
/// dhcproto: offers carry no address and the right file, siaddr and
/// option 43 for the architecture; 4011 requests get the file; REQUESTs on
/// port 67 get nothing.
#[test]
fn recorded_firmware_requests_get_the_right_answers() {
    for case in RECORDED_CASES {
        check_recorded(case, false);
        check_recorded(case, true);
    }
}

/// The recorded iPXE boot-item request asks for the first BIOS menu item
/// (0x8000, layer 0), and OVMF's 4011 request carries no boot item.
#[test]
fn recorded_4011_requests_carry_the_expected_boot_items() {
    let item = raw_option(&recorded("seabios_ipxe_request_4011_item"), 43)
        .map(|v| sub_options(&v))
        .unwrap_or_default();
    assert!(
        item.iter()
            .any(|(c, d)| *c == 71 && d[..] == [0x80, 0x00, 0x00, 0x00]),
        "iPXE's request: {item:?}"
    );
    let ovmf = recorded("ovmf_x64_request_4011");
    let ovmf_item = raw_option(&ovmf, 43)
        .map(|v| sub_options(&v))
        .unwrap_or_default();
    assert!(
        ovmf_item.iter().all(|(c, _)| *c != 71),
        "OVMF's request: {ovmf_item:?}"
    );
    assert!(
        !decode(&ovmf).ciaddr().is_unspecified(),
        "OVMF asks from its leased address"
    );
}

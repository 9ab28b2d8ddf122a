//! Bad input: a corpus of malformed packets and hostile names gets ERROR or
//! is dropped, and the server keeps serving.
//!
//! Every entry of `corpus()` says what it expects: an ERROR with a given code
//! (1 not found, 2 access violation, 4 illegal operation), no reply at all
//! (`Drop`, checked for `QUIET`), or, for requests whose only fault is a
//! malformed option, that the named good file is served intact with every
//! bad option ignored (`Serve`). A datagram longer than an Ethernet frame
//! may also be dropped instead (see `MAY_DROP_ABOVE`). For every entry,
//! over raw UDP on loopback:
//!
//! * the reply matches the expectation;
//! * no packet received ever contains the secret file that lives next to
//!   the root, nor the first line of the host's `/etc/passwd`, and no ERROR
//!   message names a server path;
//! * right after, the server is alive and serves a good file correctly.
//!
//! Then the whole corpus is sent again as a burst (every packet several
//! times, without waiting), and the server must still serve. A separate test
//! sends packets from the right client IP but another source port to a
//! running transfer's port: each gets ERROR 5 and the transfer completes.
//!
//! The corpus is also kept, one packet per file, in `tests/fixtures/tftp-bad/`
//! as seeds for the fuzzers; `corpus_fixtures_match_table` fails if the two
//! drift apart (regenerate with `RACKBOOT_WRITE_FIXTURES=1 cargo test --test
//! bad_input corpus_fixtures`).
//!
//! Both I/O backends; `--io uring` is expected to fail until it lands.

mod common;

use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long "no reply" is waited for.
const QUIET: Duration = Duration::from_millis(300);
/// How long an expected reply may take.
const REPLY_WAIT: Duration = Duration::from_secs(2);
/// Datagrams longer than one Ethernet frame's UDP payload may be dropped
/// instead of answered: no real client sends such a request, and a backend
/// may size its receive buffers for real traffic (the io_uring one uses
/// 2048-byte buffers, the epoll one 64 KiB).
const MAY_DROP_ABOVE: usize = 1472;
/// A multi-block file for the stray-TID test and the burst check.
const MULTI: TestFile = TestFile {
    name: "multi.bin",
    size: 100_000,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// An ERROR packet with this code.
    Error(u16),
    /// Nothing at all within `QUIET`.
    Drop,
    /// A transfer of this good file: the malformed parts are ignored, any
    /// OACK stays within the server's limits and the bytes arrive intact.
    Serve(&'static str),
}

struct Case {
    name: &'static str,
    packet: Vec<u8>,
    expect: Expect,
    /// Needs a special file in the root that could not be created here
    /// (a device node without CAP_MKNOD): skipped, with a note.
    needs: Option<&'static str>,
}

fn rrq_raw(parts: &[&[u8]]) -> Vec<u8> {
    let mut p = vec![0, 1];
    for part in parts {
        p.extend_from_slice(part);
        p.push(0);
    }
    p
}

fn rrq_opts(name: &str, opts: &[(&str, &str)]) -> Vec<u8> {
    rrq(name, opts)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The corpus. Names are file names of the fixture seeds.
fn corpus() -> Vec<Case> {
    use Expect::*;
    let c = |name: &'static str, packet: Vec<u8>, expect: Expect| Case {
        name,
        packet,
        expect,
        needs: None,
    };
    let long = |n: usize| "a".repeat(n);
    let deep = format!("{}b", "a/".repeat(255)); // 511 bytes, nested dirs
    let many_pairs: Vec<u8> = {
        let mut p = b"\x00\x01small.bin\x00octet\x00".to_vec();
        for i in 0..1000 {
            p.extend_from_slice(format!("x{i}\0y\0").as_bytes());
        }
        p
    };
    let mut cases = vec![
        // --- framing -------------------------------------------------------
        c("empty", vec![], Drop),
        c("one_byte_zero", vec![0], Drop),
        c("one_byte_one", vec![1], Drop),
        c("opcode_zero", cat(&[&[0, 0], b"small.bin\0octet\0"]), Drop),
        c("opcode_seven", cat(&[&[0, 7], b"small.bin\0octet\0"]), Drop),
        c("opcode_ffff", vec![0xff, 0xff, 0, 1], Drop),
        c("rrq_opcode_only", vec![0, 1], Drop),
        c("rrq_no_nul", cat(&[&[0, 1], b"small.bin"]), Drop),
        c("rrq_no_mode", cat(&[&[0, 1], b"small.bin\0"]), Drop),
        c(
            "rrq_mode_no_nul",
            cat(&[&[0, 1], b"small.bin\0octet"]),
            Drop,
        ),
        c("rrq_mode_mail", rrq_raw(&[b"small.bin", b"mail"]), Error(4)),
        c(
            "rrq_mode_unknown",
            rrq_raw(&[b"small.bin", b"binary"]),
            Error(4),
        ),
        c("rrq_mode_empty", rrq_raw(&[b"small.bin", b""]), Error(4)),
        c("rrq_filename_empty", rrq_raw(&[b"", b"octet"]), Error(4)),
        c("rrq_all_nuls", vec![0, 1, 0, 0, 0, 0], Error(4)),
        // 512 bytes is the longest string accepted: not found; 513 is refused.
        c("rrq_name_512", rrq(&long(512), &[]), Error(1)),
        c("rrq_name_513", rrq(&long(513), &[]), Error(4)),
        c("rrq_name_600", rrq(&long(600), &[]), Error(4)),
        c("rrq_name_65000", rrq(&long(65000), &[]), Error(4)),
        c("rrq_deep_path_511", rrq(&deep, &[]), Error(1)),
        c(
            "wrq_uploads_disabled",
            cat(&[&[0, 2], b"new.bin\0octet\0"]),
            Error(2),
        ),
        c(
            "wrq_traversal",
            cat(&[&[0, 2], b"../outside/new\0octet\0"]),
            Error(2),
        ),
        // --- options: ignored when malformed, the file is served ----------
        c(
            "opt_missing_value",
            cat(&[&[0, 1], b"small.bin\0octet\0blksize\0"]),
            Serve("small.bin"),
        ),
        c(
            "opt_missing_value_then_garbage",
            cat(&[&[0, 1], b"small.bin\0octet\0blksize"]),
            Serve("small.bin"),
        ),
        c(
            "opt_empty_name",
            cat(&[&[0, 1], b"small.bin\0octet\0\x00512\0"]),
            Serve("small.bin"),
        ),
        c(
            "opt_trailing_nuls",
            cat(&[&[0, 1], b"small.bin\0octet\0\0\0\0\0"]),
            Serve("small.bin"),
        ),
        c(
            "opt_blksize_overflow",
            rrq_opts("small.bin", &[("blksize", "99999999999999999999")]),
            Serve("small.bin"),
        ),
        c(
            "opt_blksize_21_digits",
            rrq_opts("small.bin", &[("blksize", "100000000000000000000")]),
            Serve("small.bin"),
        ),
        c(
            "opt_blksize_65536",
            rrq_opts("small.bin", &[("blksize", "65536")]),
            Serve("small.bin"),
        ),
        c(
            "opt_blksize_4294967296",
            rrq_opts("small.bin", &[("blksize", "4294967296")]),
            Serve("small.bin"),
        ),
        c(
            "opt_blksize_7",
            rrq_opts("small.bin", &[("blksize", "7")]),
            Serve("small.bin"),
        ),
        c(
            "opt_blksize_8",
            rrq_opts("small.bin", &[("blksize", "8")]),
            Serve("small.bin"),
        ),
        c(
            "opt_blksize_0",
            rrq_opts("small.bin", &[("blksize", "0")]),
            Serve("small.bin"),
        ),
        c(
            "opt_blksize_negative",
            rrq_opts("small.bin", &[("blksize", "-1")]),
            Serve("small.bin"),
        ),
        c(
            "opt_blksize_plus",
            rrq_opts("small.bin", &[("blksize", "+1024")]),
            Serve("small.bin"),
        ),
        c(
            "opt_blksize_text",
            rrq_opts("small.bin", &[("blksize", "abc")]),
            Serve("small.bin"),
        ),
        c(
            "opt_blksize_hex",
            rrq_opts("small.bin", &[("blksize", "0x400")]),
            Serve("small.bin"),
        ),
        c(
            "opt_blksize_space",
            rrq_opts("small.bin", &[("blksize", " 1024")]),
            Serve("small.bin"),
        ),
        c(
            "opt_blksize_empty",
            rrq_opts("small.bin", &[("blksize", "")]),
            Serve("small.bin"),
        ),
        c(
            "opt_windowsize_0",
            rrq_opts("small.bin", &[("windowsize", "0")]),
            Serve("small.bin"),
        ),
        c(
            "opt_windowsize_65535",
            rrq_opts("small.bin", &[("windowsize", "65535")]),
            Serve("small.bin"),
        ),
        c(
            "opt_windowsize_65536",
            rrq_opts("small.bin", &[("windowsize", "65536")]),
            Serve("small.bin"),
        ),
        c(
            "opt_windowsize_huge",
            rrq_opts("small.bin", &[("windowsize", "18446744073709551616")]),
            Serve("small.bin"),
        ),
        c(
            "opt_windowsize_negative",
            rrq_opts("small.bin", &[("windowsize", "-16")]),
            Serve("small.bin"),
        ),
        c(
            "opt_timeout_0",
            rrq_opts("small.bin", &[("timeout", "0")]),
            Serve("small.bin"),
        ),
        c(
            "opt_timeout_256",
            rrq_opts("small.bin", &[("timeout", "256")]),
            Serve("small.bin"),
        ),
        c(
            "opt_timeout_text",
            rrq_opts("small.bin", &[("timeout", "soon")]),
            Serve("small.bin"),
        ),
        c(
            "opt_tsize_text",
            rrq_opts("small.bin", &[("tsize", "enable")]),
            Serve("small.bin"),
        ),
        c(
            "opt_tsize_negative",
            rrq_opts("small.bin", &[("tsize", "-1")]),
            Serve("small.bin"),
        ),
        c(
            "opt_everything_extreme",
            rrq_opts(
                "small.bin",
                &[
                    ("blksize", "65535"),
                    ("windowsize", "65535"),
                    ("timeout", "255"),
                    ("tsize", "0"),
                ],
            ),
            Serve("small.bin"),
        ),
        c(
            "opt_duplicates",
            rrq_opts(
                "small.bin",
                &[
                    ("blksize", "8"),
                    ("blksize", "65464"),
                    ("windowsize", "1"),
                    ("WINDOWSIZE", "64"),
                ],
            ),
            Serve("small.bin"),
        ),
        c("opt_many_pairs", many_pairs, Serve("small.bin")),
        c(
            "opt_non_utf8",
            cat(&[&[0, 1], b"small.bin\0octet\0\xff\xfe\0\xc0\xaf\0"]),
            Serve("small.bin"),
        ),
        c(
            "opt_unknown_multicast",
            rrq_opts("small.bin", &[("multicast", ""), ("rollover", "1")]),
            Serve("small.bin"),
        ),
        // --- packets that only make sense inside a transfer ---------------
        c(
            "data_to_listen_port",
            cat(&[&[0, 3, 0, 1], b"hello"]),
            Error(4),
        ),
        c("data_empty_to_listen_port", vec![0, 3, 0, 1], Error(4)),
        c("data_header_only", vec![0, 3], Drop),
        c("ack_to_listen_port", vec![0, 4, 0, 1], Error(4)),
        c("ack_zero_to_listen_port", vec![0, 4, 0, 0], Error(4)),
        c("ack_short", vec![0, 4, 0], Drop),
        c(
            "oack_to_listen_port",
            cat(&[&[0, 6], b"blksize\x00512\0"]),
            Error(4),
        ),
        c("oack_empty_to_listen_port", vec![0, 6], Error(4)),
        c(
            "error_to_listen_port",
            cat(&[&[0, 5, 0, 0], b"go away\0"]),
            Drop,
        ),
        c("error_unterminated", cat(&[&[0, 5, 0, 1], b"no nul"]), Drop),
        c("error_short", vec![0, 5, 0], Drop),
        // --- hostile names -------------------------------------------------
        c(
            "name_dotdot_etc_passwd",
            rrq("../etc/passwd", &[]),
            Error(2),
        ),
        c(
            "name_dotdot_many",
            rrq("../../../../../../../../etc/passwd", &[]),
            Error(2),
        ),
        c(
            "name_backslash_dotdot",
            rrq("..\\..\\windows\\win.ini", &[]),
            Error(2),
        ),
        c(
            "name_mixed_slashes_dotdot",
            rrq("subdir\\..\\../outside/secret.txt", &[]),
            Error(2),
        ),
        c(
            "name_dotdot_to_secret",
            rrq("../outside/secret.txt", &[]),
            Error(2),
        ),
        c(
            "name_abs_dotdot_to_secret",
            rrq("/../outside/secret.txt", &[]),
            Error(2),
        ),
        c("name_inner_dotdot", rrq("a/../../b", &[]), Error(2)),
        // `..` is refused outright, even where it would stay inside the root.
        c(
            "name_dotdot_staying_inside",
            rrq("subdir/../small.bin", &[]),
            Error(2),
        ),
        c("name_dotdot", rrq("..", &[]), Error(2)),
        c("name_dotdot_slash", rrq("../", &[]), Error(2)),
        // An absolute name is relative to the root: root/etc/passwd.
        c("name_abs_etc_passwd", rrq("/etc/passwd", &[]), Error(1)),
        c(
            "name_abs_proc_environ",
            rrq("/proc/self/environ", &[]),
            Error(1),
        ),
        c("name_abs_dev_zero", rrq("/dev/zero", &[]), Error(1)),
        c(
            "name_drive_letter",
            rrq("C:\\windows\\win.ini", &[]),
            Error(1),
        ),
        // No URL decoding: these are literal (missing) names.
        c(
            "name_url_encoded_dots",
            rrq("%2e%2e/%2e%2e/etc/passwd", &[]),
            Error(1),
        ),
        c(
            "name_url_encoded_slash",
            rrq("..%2f..%2fetc%2fpasswd", &[]),
            Error(1),
        ),
        c(
            "name_url_encoded_nul",
            rrq("../outside/secret.txt%00.bin", &[]),
            Error(2),
        ),
        c(
            "name_overlong_utf8_dots",
            rrq_raw(&[b"\xc0\xae\xc0\xae/outside/secret.txt", b"octet"]),
            Error(2),
        ),
        c("name_non_utf8", rrq_raw(&[b"\xff\xfe", b"octet"]), Error(2)),
        c("name_newline", rrq("small\n.bin", &[]), Error(2)),
        c("name_escape_char", rrq("small.bin\x1b[2J", &[]), Error(2)),
        c("name_del_char", rrq("small.bin\x7f", &[]), Error(2)),
        // An embedded NUL ends the name: what follows is read as the mode.
        c(
            "name_embedded_nul",
            rrq_raw(&[b"small.bin", b"../outside/secret.txt", b"octet"]),
            Error(4),
        ),
        c(
            "name_embedded_nul_escape_first",
            rrq_raw(&[b"escape.txt", b"small.bin", b"octet"]),
            Error(4),
        ),
        c("name_dot", rrq(".", &[]), Error(1)),
        c("name_slash", rrq("/", &[]), Error(1)),
        c("name_slashes_and_dots", rrq("/./././/", &[]), Error(1)),
        c("name_directory", rrq("subdir", &[]), Error(1)),
        c("name_directory_slash", rrq("subdir/", &[]), Error(1)),
        c("name_uppercase", rrq("SMALL.BIN", &[]), Error(1)),
        // Leading and doubled separators are normalised: a good file.
        c(
            "name_leading_backslash",
            rrq("\\small.bin", &[]),
            Serve("small.bin"),
        ),
        c(
            "name_double_slash",
            rrq("//small.bin", &[]),
            Serve("small.bin"),
        ),
        c(
            "name_dot_segments",
            rrq("./subdir/./inner.bin", &[]),
            Serve("subdir/inner.bin"),
        ),
        // Links and special files planted in the root (see `plant`).
        c("link_absolute_to_secret", rrq("escape.txt", &[]), Error(2)),
        c(
            "link_relative_to_secret",
            rrq("rel-escape.txt", &[]),
            Error(2),
        ),
        c("link_chain_to_secret", rrq("chain", &[]), Error(2)),
        c("link_dir_outside", rrq("outdir/secret.txt", &[]), Error(2)),
        c("link_to_etc", rrq("sysconf", &[]), Error(2)),
        c("link_to_etc_passwd", rrq("sysconf/passwd", &[]), Error(2)),
        c("link_loop", rrq("loop", &[]), Error(2)),
        c("link_inside_root", rrq("inside", &[]), Serve("small.bin")),
        c("special_fifo", rrq("fifo", &[]), Error(2)),
        Case {
            name: "special_char_device",
            packet: rrq("zero", &[]),
            expect: Error(2),
            needs: Some("zero"),
        },
    ];
    // Every hostile name also with options: the refusal must not depend on
    // an OACK path.
    let with_options: Vec<Case> = cases
        .iter()
        .filter(|c| c.name.starts_with("link_") && c.expect != Serve("small.bin"))
        .map(|c| {
            let name: &'static str = Box::leak(format!("{}_with_options", c.name).into_boxed_str());
            let file = &c.packet[2..c.packet[2..].iter().position(|&b| b == 0).unwrap() + 2];
            Case {
                name,
                packet: rrq(
                    std::str::from_utf8(file).unwrap(),
                    &[("tsize", "0"), ("blksize", "1468"), ("windowsize", "16")],
                ),
                expect: c.expect,
                needs: c.needs,
            }
        })
        .collect();
    cases.extend(with_options);
    cases
}

// ---------------------------------------------------------------------------
// The root, with hostile links and special files planted
// ---------------------------------------------------------------------------

/// Plants links and special files in `fx.root()`; returns the names that
/// could not be created (a device node needs CAP_MKNOD).
fn plant(fx: &Fixture) -> Vec<&'static str> {
    use std::os::unix::fs::symlink;
    let root = fx.root();
    let outside = fx.outside();
    std::fs::create_dir_all(root.join("subdir")).unwrap();
    write_pattern_file(&root.join("subdir/inner.bin"), 3000, "subdir/inner.bin");
    write_pattern_file(&root.join(MULTI.name), MULTI.size, MULTI.name);
    symlink(outside.join("secret.txt"), root.join("escape.txt")).unwrap();
    symlink("../outside/secret.txt", root.join("rel-escape.txt")).unwrap();
    symlink("escape.txt", root.join("chain")).unwrap();
    symlink(&outside, root.join("outdir")).unwrap();
    symlink("/etc", root.join("sysconf")).unwrap();
    symlink("loop", root.join("loop")).unwrap();
    symlink("small.bin", root.join("inside")).unwrap();
    let mut missing = Vec::new();
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo/mknod with valid NUL-terminated paths.
    unsafe {
        assert_eq!(
            libc::mkfifo(c(&root.join("fifo")).as_ptr(), 0o644),
            0,
            "mkfifo: {}",
            std::io::Error::last_os_error()
        );
        // A twin of /dev/zero: serving it would stream zeros forever.
        if libc::mknod(
            c(&root.join("zero")).as_ptr(),
            libc::S_IFCHR | 0o644,
            libc::makedev(1, 5),
        ) != 0
        {
            eprintln!(
                "note: cannot create a device node in the root ({}); its case is skipped",
                std::io::Error::last_os_error()
            );
            missing.push("zero");
        }
    }
    missing
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// Things no reply may ever contain.
struct Forbidden {
    needles: Vec<(String, Vec<u8>)>,
    paths: Vec<String>,
}

impl Forbidden {
    fn new(fx: &Fixture) -> Forbidden {
        let mut needles = vec![(
            "the secret file outside the root".to_string(),
            SECRET.to_vec(),
        )];
        if let Ok(passwd) = std::fs::read("/etc/passwd")
            && let Some(first) = passwd
                .split(|&b| b == b'\n')
                .next()
                .filter(|l| l.len() >= 8)
        {
            needles.push(("the first line of /etc/passwd".to_string(), first.to_vec()));
        }
        let paths = vec![
            fx.root().display().to_string(),
            fx.outside().display().to_string(),
        ];
        Forbidden { needles, paths }
    }

    fn check(&self, context: &str, p: &[u8]) {
        for (what, needle) in &self.needles {
            assert!(
                !p.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{context}: a reply contains {what}: {}",
                packet_summary(p)
            );
        }
        if let [0, 5, _, _, msg @ ..] = p {
            let msg = String::from_utf8_lossy(msg);
            for path in &self.paths {
                assert!(
                    !msg.contains(path.as_str()),
                    "{context}: ERROR names a server path: {msg:?}"
                );
            }
        }
    }
}

fn recv(sock: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = sock.recv_from(&mut buf).ok()?;
    buf.truncate(n);
    Some((buf, from))
}

/// The option names of an RRQ, lowercased (for checking an OACK).
fn requested_options(packet: &[u8]) -> Vec<String> {
    let fields: Vec<&[u8]> = packet.get(2..).unwrap_or(&[]).split(|&b| b == 0).collect();
    fields
        .get(2..)
        .unwrap_or(&[])
        .chunks(2)
        .filter(|p| p.len() == 2)
        .map(|p| String::from_utf8_lossy(p[0]).to_ascii_lowercase())
        .collect()
}

/// Given the first reply to a request for `expected`, runs the transfer to
/// the end (lock-step or windowed, as negotiated), checking the OACK
/// against the limits and every byte against `expected`.
fn complete_transfer(
    sock: &UdpSocket,
    first: (Vec<u8>, SocketAddr),
    request: &[u8],
    expected: &[u8],
    forbidden: &Forbidden,
    context: &str,
) {
    let (mut packet, tid) = first;
    let (mut blksize, mut window) = (512usize, 1u64);
    if let [0, 6, opts @ ..] = packet.as_slice() {
        let asked = requested_options(request);
        let fields: Vec<&[u8]> = opts.split(|&b| b == 0).collect();
        for pair in fields
            .chunks(2)
            .filter(|p| p.len() == 2 && !p[0].is_empty())
        {
            let name = String::from_utf8_lossy(pair[0]).to_ascii_lowercase();
            let value: u64 = std::str::from_utf8(pair[1])
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{context}: OACK {name} has value {:?}", pair[1]));
            assert!(
                asked.contains(&name),
                "{context}: OACK has {name}, which was not asked for"
            );
            match name.as_str() {
                "blksize" => {
                    assert!(
                        (8..=65464).contains(&value),
                        "{context}: OACK blksize {value}"
                    );
                    blksize = value as usize;
                }
                "windowsize" => {
                    assert!(
                        (1..=64).contains(&value),
                        "{context}: OACK windowsize {value}"
                    );
                    window = value;
                }
                "timeout" => assert!(
                    (1..=255).contains(&value),
                    "{context}: OACK timeout {value}"
                ),
                "tsize" => assert_eq!(value, expected.len() as u64, "{context}: OACK tsize"),
                other => panic!("{context}: OACK has unexpected option {other}"),
            }
        }
        sock.send_to(&[0, 4, 0, 0], tid).unwrap();
        packet = next_from(sock, tid, forbidden, context, &[0, 4, 0, 0]);
    }
    let mut offset = 0usize;
    let mut next: u16 = 1;
    let mut since_ack = 0u64;
    loop {
        match packet.as_slice() {
            [0, 3, hi, lo, data @ ..] => {
                let block = u16::from_be_bytes([*hi, *lo]);
                if block == next {
                    assert!(
                        data.len() <= blksize,
                        "{context}: DATA {block} of {} bytes",
                        data.len()
                    );
                    let end = offset + data.len();
                    assert!(
                        end <= expected.len(),
                        "{context}: DATA past the end of the file"
                    );
                    assert!(
                        data == &expected[offset..end],
                        "{context}: wrong bytes in DATA {block}"
                    );
                    offset = end;
                    since_ack += 1;
                    let last = data.len() < blksize;
                    if last || since_ack == window {
                        since_ack = 0;
                        sock.send_to(&[0, 4, *hi, *lo], tid).unwrap();
                    }
                    if last {
                        assert_eq!(offset, expected.len(), "{context}: short file");
                        return;
                    }
                    next = next.wrapping_add(1);
                }
            }
            other => panic!(
                "{context}: expected DATA {next}, got {}",
                packet_summary(other)
            ),
        }
        let last_ack = next.wrapping_sub(1).to_be_bytes();
        packet = next_from(
            sock,
            tid,
            forbidden,
            context,
            &[0, 4, last_ack[0], last_ack[1]],
        );
    }
}

/// The next packet from `tid`, re-sending `retry` on silence (bounded).
fn next_from(
    sock: &UdpSocket,
    tid: SocketAddr,
    forbidden: &Forbidden,
    context: &str,
    retry: &[u8],
) -> Vec<u8> {
    for _ in 0..5 {
        while let Some((p, from)) = recv(sock, REPLY_WAIT) {
            forbidden.check(context, &p);
            if from == tid {
                return p;
            }
        }
        sock.send_to(retry, tid).unwrap();
    }
    panic!("{context}: the transfer from {tid} went silent");
}

/// The server still serves a good file: a plain RRQ, lock-step to the end.
fn check_still_serving(server: &mut Server, fx_root: &Path, forbidden: &Forbidden, context: &str) {
    server.assert_alive();
    let context = format!("{context}: then serving small.bin");
    let expected = std::fs::read(fx_root.join(SMALL.name)).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let request = rrq(SMALL.name, &[]);
    sock.send_to(&request, server.addr_v4()).unwrap();
    let first = recv(&sock, REPLY_WAIT)
        .unwrap_or_else(|| panic!("{context}: no answer: the server stopped serving"));
    forbidden.check(&context, &first.0);
    assert!(
        first.0.starts_with(&[0, 3, 0, 1]),
        "{context}: got {}",
        packet_summary(&first.0)
    );
    complete_transfer(&sock, first, &request, &expected, forbidden, &context);
}

fn run_case(server: &mut Server, fx: &Fixture, forbidden: &Forbidden, case: &Case, io: Io) {
    let context = format!("{io:?} {} ({})", case.name, packet_summary(&case.packet));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(&case.packet, server.addr_v4())
        .unwrap_or_else(|e| panic!("{context}: send: {e}"));
    match case.expect {
        Expect::Drop => {
            if let Some((p, from)) = recv(&sock, QUIET) {
                forbidden.check(&context, &p);
                panic!(
                    "{context}: expected no reply, got {} from {from}",
                    packet_summary(&p)
                );
            }
        }
        Expect::Error(code) => {
            let Some((p, from)) = recv(&sock, REPLY_WAIT) else {
                if case.packet.len() > MAY_DROP_ABOVE {
                    eprintln!(
                        "{context}: dropped (allowed for a datagram over {MAY_DROP_ABOVE} bytes)"
                    );
                    return check_still_serving(server, &fx.root(), forbidden, &context);
                }
                panic!("{context}: expected ERROR {code}, got no reply");
            };
            forbidden.check(&context, &p);
            match p.as_slice() {
                [0, 5, hi, lo, ..] => {
                    let got = u16::from_be_bytes([*hi, *lo]);
                    assert_eq!(
                        got,
                        code,
                        "{context}: expected ERROR {code}, got {}",
                        packet_summary(&p)
                    );
                    assert_eq!(
                        from,
                        server.addr_v4(),
                        "{context}: a refusal should come from the listen port"
                    );
                }
                _ => panic!(
                    "{context}: expected ERROR {code}, got {} from {from}",
                    packet_summary(&p)
                ),
            }
            // Nothing else follows an ERROR (no transfer was started).
            if let Some((p, from)) = recv(&sock, QUIET) {
                forbidden.check(&context, &p);
                panic!(
                    "{context}: after the ERROR, got {} from {from}",
                    packet_summary(&p)
                );
            }
        }
        Expect::Serve(file) => {
            let expected = std::fs::read(fx.root().join(file)).unwrap();
            let Some(first) = recv(&sock, REPLY_WAIT) else {
                if case.packet.len() > MAY_DROP_ABOVE {
                    eprintln!(
                        "{context}: dropped (allowed for a datagram over {MAY_DROP_ABOVE} bytes)"
                    );
                    return check_still_serving(server, &fx.root(), forbidden, &context);
                }
                panic!("{context}: expected {file} to be served, got no reply");
            };
            forbidden.check(&context, &first.0);
            assert!(
                first.0.starts_with(&[0, 6]) || first.0.starts_with(&[0, 3, 0, 1]),
                "{context}: expected OACK or DATA 1, got {}",
                packet_summary(&first.0)
            );
            complete_transfer(&sock, first, &case.packet, &expected, forbidden, &context);
        }
    }
    check_still_serving(server, &fx.root(), forbidden, &context);
}

fn bad_input(io: Io) {
    let fx = Fixture::new(&[SMALL]);
    let missing = plant(&fx);
    let forbidden = Forbidden::new(&fx);
    let mut server = Server::spawn(&fx.root(), &ServerConfig::new(io));
    let cases = corpus();
    let mut ran = 0;
    for case in &cases {
        if case.needs.is_some_and(|n| missing.contains(&n)) {
            eprintln!("skipped {}: needs {}", case.name, case.needs.unwrap());
            continue;
        }
        run_case(&mut server, &fx, &forbidden, case, io);
        ran += 1;
    }
    eprintln!("{io:?}: {ran} corpus entries as expected");

    // The whole corpus as a burst: every packet 10 times from one socket,
    // no waiting (bounded: 10 x corpus). Replies are drained and checked.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..10 {
        for case in &cases {
            let _ = sock.send_to(&case.packet, server.addr_v4());
        }
    }
    let drain_until = Instant::now() + Duration::from_secs(2);
    let mut replies = 0;
    while Instant::now() < drain_until {
        match recv(&sock, Duration::from_millis(200)) {
            Some((p, _)) => {
                forbidden.check("burst", &p);
                replies += 1;
            }
            None => break,
        }
    }
    eprintln!(
        "{io:?}: burst of {} packets drew {replies} replies",
        cases.len() * 10
    );
    check_still_serving(&mut server, &fx.root(), &forbidden, "after the burst");
    // A multi-block file too, windowed.
    let expected = std::fs::read(fx.root().join(MULTI.name)).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let request = rrq(
        MULTI.name,
        &[("blksize", "1468"), ("windowsize", "8"), ("tsize", "0")],
    );
    sock.send_to(&request, server.addr_v4()).unwrap();
    let first = recv(&sock, REPLY_WAIT).expect("multi.bin after the burst: no answer");
    complete_transfer(
        &sock,
        first,
        &request,
        &expected,
        &forbidden,
        "multi.bin after the burst",
    );
    server.stop();
}

#[test]
fn bad_input_epoll() {
    bad_input(Io::Epoll);
}

#[test]
fn bad_input_uring() {
    bad_input(Io::Uring);
}

/// A packet from the client's IP but another source port, sent to a running
/// transfer's port, gets ERROR 5 (RFC 1350) and the transfer goes on to the
/// end. So do malformed packets from the right peer (ignored).
fn stray_tid(io: Io) {
    let fx = Fixture::new(&[SMALL]);
    plant(&fx);
    let forbidden = Forbidden::new(&fx);
    let mut server = Server::spawn(&fx.root(), &ServerConfig::new(io));
    let expected = std::fs::read(fx.root().join(MULTI.name)).unwrap();
    let blocks = expected.len() / 512 + 1;
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let intruder = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .send_to(&rrq(MULTI.name, &[]), server.addr_v4())
        .unwrap();
    let (mut packet, tid) = recv(&client, REPLY_WAIT).expect("no DATA 1");
    assert_ne!(
        tid,
        server.addr_v4(),
        "plain mode: the transfer has its own port"
    );
    let intrusions: Vec<(&str, Vec<u8>)> = vec![
        ("ACK 1", vec![0, 4, 0, 1]),
        ("ACK 9999", vec![0, 4, 0x27, 0x0f]),
        ("ERROR 0", error_packet(0, "abort")),
        ("RRQ", rrq(MULTI.name, &[])),
        ("DATA", vec![0, 3, 0, 1, 1, 2, 3]),
        ("garbage", vec![0xde, 0xad, 0xbe, 0xef]),
        ("empty", vec![]),
    ];
    let mut offset = 0usize;
    let mut next: u16 = 1;
    let mut stray_answers = 0;
    for _ in 0..blocks * 3 {
        let [0, 3, hi, lo, data @ ..] = packet.as_slice() else {
            panic!(
                "{io:?}: expected DATA {next}, got {}",
                packet_summary(&packet)
            );
        };
        let block = u16::from_be_bytes([*hi, *lo]);
        if block == next {
            assert_eq!(
                data,
                &expected[offset..offset + data.len()],
                "{io:?}: DATA {block}"
            );
            offset += data.len();
            // At a few points, the intruder speaks to the transfer port and
            // the real client sends malformed packets.
            if [1u16, 2, 50, 150].contains(&block) {
                for (what, p) in &intrusions {
                    intruder.send_to(p, tid).unwrap();
                    let (reply, from) = recv(&intruder, REPLY_WAIT).unwrap_or_else(|| {
                        panic!("{io:?}: stray {what} at block {block}: no ERROR 5")
                    });
                    forbidden.check("stray", &reply);
                    assert_eq!(
                        from, tid,
                        "{io:?}: ERROR 5 should come from the transfer port"
                    );
                    assert!(
                        reply.starts_with(&[0, 5, 0, 5]),
                        "{io:?}: stray {what} at block {block}: expected ERROR 5, got {}",
                        packet_summary(&reply)
                    );
                    stray_answers += 1;
                }
                for junk in [&[0xffu8, 0xff][..], &[0, 4][..], &[0, 6, 1, 2][..]] {
                    client.send_to(junk, tid).unwrap();
                }
            }
            client.send_to(&[0, 4, *hi, *lo], tid).unwrap();
            if data.len() < 512 {
                assert_eq!(offset, expected.len(), "{io:?}: short file");
                break;
            }
            next = next.wrapping_add(1);
        }
        let ack = next.wrapping_sub(1).to_be_bytes();
        packet = next_from(
            &client,
            tid,
            &forbidden,
            "stray-tid transfer",
            &[0, 4, ack[0], ack[1]],
        );
    }
    assert_eq!(
        offset,
        expected.len(),
        "{io:?}: the transfer did not complete"
    );
    assert_eq!(stray_answers, intrusions.len() * 4);
    // The intruder got nothing but ERROR 5s.
    if let Some((p, from)) = recv(&intruder, QUIET) {
        panic!(
            "{io:?}: the intruder also got {} from {from}",
            packet_summary(&p)
        );
    }
    check_still_serving(
        &mut server,
        &fx.root(),
        &forbidden,
        "after the stray-TID test",
    );
    server.stop();
}

#[test]
fn stray_tid_epoll() {
    stray_tid(Io::Epoll);
}

#[test]
fn stray_tid_uring() {
    stray_tid(Io::Uring);
}

// ---------------------------------------------------------------------------
// Fuzzer seeds
// ---------------------------------------------------------------------------

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tftp-bad")
}

/// `tests/fixtures/tftp-bad/<name>.bin` holds each corpus packet, as seeds
/// for the fuzzers; this keeps them identical to the table.
#[test]
fn corpus_fixtures_match_table() {
    let dir = fixtures_dir();
    let cases = corpus();
    let mut names = std::collections::HashSet::new();
    for case in &cases {
        assert!(
            names.insert(case.name),
            "duplicate corpus name {}",
            case.name
        );
    }
    if std::env::var_os("RACKBOOT_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for case in &cases {
            std::fs::write(dir.join(format!("{}.bin", case.name)), &case.packet).unwrap();
        }
    }
    let mut problems = Vec::new();
    for case in &cases {
        let path = dir.join(format!("{}.bin", case.name));
        match std::fs::read(&path) {
            Ok(bytes) if bytes == case.packet => {}
            Ok(_) => problems.push(format!("{} differs from the table", path.display())),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".bin")
            && !names.contains(stem)
        {
            problems.push(format!("{name} is not in the table"));
        }
    }
    assert!(
        problems.is_empty(),
        "fuzzer seeds out of date (regenerate with RACKBOOT_WRITE_FIXTURES=1 cargo test --test bad_input corpus_fixtures):\n{}",
        problems.join("\n")
    );
}

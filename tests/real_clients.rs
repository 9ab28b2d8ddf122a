//! The TFTP server against real clients over loopback.
//!
//! Every (client, I/O backend) pair downloads an empty file, a small one, an
//! exact multiple of the block size and one over 32 MiB at blksize 512 (the
//! block number wraps), each verified by SHA-256; then asks for a missing
//! file (must see ERROR 1) and for `../outside/secret.txt` (must be refused).
//!
//! Clients, as installed by `.ci/install.sh` from Debian bookworm packages:
//!
//! * tftp-hpa `tftp`: cannot negotiate any option; always sends a bare RRQ
//!   (blksize 512). It exits 0 even when the server sends an ERROR (and leaves
//!   an empty local file behind), so success is judged from its output.
//! * `curl tftp://`: by default sends `tsize 0`, `blksize 512`, `timeout 6`;
//!   `--tftp-blksize N` changes blksize. curl refuses an OACK whose tsize is
//!   0 ("invalid tsize -:0:- value in OACK packet", exit 71), so the empty
//!   file is fetched with `--tftp-no-options` (bare RRQ). ERROR n maps to exit
//!   code 67 + n for n in 1..=7 (68 = file not found).
//! * `atftp` 0.8: `--option "blksize N" --option "windowsize 16" --option tsize`.
//!   Note `--option "tsize enable"` would send the literal string `enable` as
//!   the tsize value, so plain `tsize` is used. `--trace` shows the OACK.
//!   Exits 255 on any error.
//! * busybox `tftp`: always sends `tsize 0`; `-b N` adds `blksize N` unless N
//!   is 512. Exits 1 on error and prints `server error: (CODE) MESSAGE`.

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The block size asked for by clients that can negotiate it (a typical
/// Ethernet-sized value); the large file always goes at 512.
const BIG_BLKSIZE: u16 = 1468;
/// The window size atftp asks for.
const WINDOW: u16 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    TftpHpa,
    Curl,
    Atftp,
    Busybox,
}

/// What a client run is supposed to fetch.
struct Get<'a> {
    server: SocketAddr,
    remote: &'a str,
    local: &'a Path,
    blksize: u16,
    /// The empty file: curl must not negotiate options (see module docs).
    empty: bool,
    /// Ask atftp to print its packets (used to check the OACK).
    trace: bool,
}

impl Client {
    fn program(self) -> &'static str {
        match self {
            Client::TftpHpa => "tftp",
            Client::Curl => "curl",
            Client::Atftp => "atftp",
            Client::Busybox => "busybox",
        }
    }

    fn args(self, g: &Get) -> Vec<String> {
        let host = g.server.ip().to_string();
        let port = g.server.port().to_string();
        let local = g.local.display().to_string();
        let mut a: Vec<String> = Vec::new();
        match self {
            Client::TftpHpa => {
                a.extend(["-v", "-m", "binary"].map(String::from));
                if g.server.is_ipv6() {
                    a.push("-6".into());
                }
                a.extend([
                    host,
                    port,
                    "-c".into(),
                    "get".into(),
                    g.remote.into(),
                    local,
                ]);
            }
            Client::Curl => {
                a.extend(["-sS", "--path-as-is", "--max-time", "110"].map(String::from));
                if g.empty {
                    a.push("--tftp-no-options".into());
                } else {
                    a.extend(["--tftp-blksize".into(), g.blksize.to_string()]);
                }
                a.extend([
                    "-o".into(),
                    local,
                    format!("tftp://{}/{}", g.server, g.remote),
                ]);
            }
            Client::Atftp => {
                if g.trace {
                    a.push("--trace".into());
                }
                a.extend(["--get", "-r", g.remote, "-l", &local].map(String::from));
                for opt in [
                    format!("blksize {}", g.blksize),
                    format!("windowsize {WINDOW}"),
                    "tsize".into(),
                ] {
                    a.extend(["--option".into(), opt]);
                }
                a.extend([host, port]);
            }
            Client::Busybox => {
                a.extend(["tftp", "-g", "-r", g.remote, "-l", &local, "-b"].map(String::from));
                a.extend([g.blksize.to_string(), host, port]);
            }
        }
        a
    }

    fn get(self, g: &Get, dir: &Path) -> Outcome {
        run_with_timeout(self.program(), &self.args(g), dir, CLIENT_TIMEOUT)
    }

    /// Did the run report success? (Exit status alone is not enough for
    /// tftp-hpa, which exits 0 after an ERROR.)
    fn succeeded(self, out: &Outcome) -> bool {
        let all = out.output();
        out.code == Some(0)
            && match self {
                Client::TftpHpa => !all.contains("Error code") && !all.contains("timed out"),
                Client::Atftp => !all.contains("aborting"),
                Client::Curl | Client::Busybox => true,
            }
    }

    /// If the run failed because the server sent an ERROR packet, the
    /// error code when the client shows it (`Some(None)` for atftp, which
    /// does not); `None` for success, a timeout or any other failure.
    fn server_error(self, out: &Outcome) -> Option<Option<u16>> {
        if out.timed_out {
            return None;
        }
        let all = out.output();
        let after = |marker: &str| -> Option<u16> {
            let rest = &all[all.find(marker)? + marker.len()..];
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()
        };
        match self {
            // "Error code 1: File not found", exit 0
            Client::TftpHpa => all.contains("Error code ").then(|| after("Error code ")),
            // ERROR n -> CURLE 67 + n for n in 1..=7; 0 and 4 both give 71.
            Client::Curl => match out.code? {
                71 => Some(None),
                c @ 68..=74 => Some(Some((c - 67) as u16)),
                _ => None,
            },
            // "tftp: error received from server <File not found>", exit 255
            Client::Atftp => {
                (out.code != Some(0) && all.contains("error received from server")).then_some(None)
            }
            // "tftp: server error: (1) File not found", exit 1
            Client::Busybox => (out.code != Some(0) && all.contains("server error: ("))
                .then(|| after("server error: (")),
        }
    }
}

/// The whole matrix for one (client, backend): four downloads, a missing
/// file and a path traversal attempt.
fn check_client(client: Client, io: Io) {
    require_program(client.program());
    let fx = Fixture::new(&ALL_FILES);
    let server = Server::spawn(&fx.root(), &ServerConfig::new(io));
    let addr = server.addr_v4();

    for file in ALL_FILES {
        let local = fx.download_path(&format!("{}-{:?}", file.name, client));
        let g = Get {
            server: addr,
            remote: file.name,
            local: &local,
            blksize: if file.size > 32 * 1024 * 1024 {
                512
            } else {
                BIG_BLKSIZE
            },
            empty: file.size == 0,
            trace: file.size < 8 * 1024 * 1024,
        };
        let out = client.get(&g, &fx.downloads());
        assert!(
            client.succeeded(&out),
            "{client:?}/{io:?}: download of {} failed: {}",
            file.name,
            out.describe()
        );
        if let Err(e) = verify_same(&fx.root().join(file.name), &local) {
            panic!("{client:?}/{io:?}: {}: {e}\n{}", file.name, out.describe());
        }
        if client == Client::Atftp && g.trace {
            check_atftp_oack(&out, file, server.kind());
        }
        eprintln!(
            "ok {client:?}/{io:?} {} ({} bytes, blksize {}) in {:.2?}",
            file.name, file.size, g.blksize, out.elapsed
        );
    }

    // A missing file: the client must see ERROR 1 (File not found).
    let local = fx.download_path("missing");
    let g = Get {
        server: addr,
        remote: "no-such-file.bin",
        local: &local,
        blksize: 512,
        empty: false,
        trace: false,
    };
    let out = client.get(&g, &fx.downloads());
    let expected = if client == Client::Atftp {
        Some(None)
    } else {
        Some(Some(1))
    }; // atftp hides the code
    assert_eq!(
        client.server_error(&out),
        expected,
        "{client:?}/{io:?}: missing file: expected ERROR 1: {}",
        out.describe()
    );
    assert_no_content(&local);

    // Path traversal: refused with an ERROR, secret not leaked.
    let local = fx.download_path("traversal");
    let g = Get {
        server: addr,
        remote: "../outside/secret.txt",
        local: &local,
        blksize: 512,
        empty: false,
        trace: false,
    };
    let out = client.get(&g, &fx.downloads());
    assert!(
        client.server_error(&out).is_some(),
        "{client:?}/{io:?}: `../` request was not refused with an ERROR: {}",
        out.describe()
    );
    assert_no_content(&local);

    server.stop();
}

/// atftp asked for tsize (and windowsize): the OACK must carry the true size.
fn check_atftp_oack(out: &Outcome, file: TestFile, kind: ServerKind) {
    let line = out
        .output()
        .lines()
        .find(|l| l.starts_with("received OACK"))
        .unwrap_or_else(|| panic!("atftp: no OACK for {}: {}", file.name, out.describe()))
        .to_string();
    if file.size == 0 && kind == ServerKind::Rackboot {
        // rackboot announces no tsize for an empty file: curl refuses an
        // OACK saying `tsize 0` (see tftp::options).
        assert!(
            !line.contains("tsize"),
            "atftp: tsize announced for an empty file in `{line}`"
        );
    } else {
        assert!(
            line.contains(&format!("tsize: {},", file.size)),
            "atftp: wrong tsize for {} in `{line}`",
            file.name
        );
    }
    // tftpd-hpa (the development stand-in) does not implement windowsize.
    if kind == ServerKind::Rackboot {
        assert!(
            line.contains("windowsize: "),
            "atftp: windowsize not acknowledged in `{line}`"
        );
    }
}

/// Some clients create the local file before the transfer; it must at
/// least be empty (and certainly not hold the secret).
fn assert_no_content(local: &Path) {
    if let Ok(bytes) = std::fs::read(local) {
        assert!(
            bytes.is_empty(),
            "{} received {} bytes from a refused request",
            local.display(),
            bytes.len()
        );
    }
}

macro_rules! client_matrix {
    ($($name:ident: $client:ident, $io:ident;)*) => {$(
        #[test]
        fn $name() {
            check_client(Client::$client, Io::$io);
        }
    )*};
}

client_matrix! {
    tftp_hpa_epoll: TftpHpa, Epoll;
    tftp_hpa_uring: TftpHpa, Uring;
    curl_epoll: Curl, Epoll;
    curl_uring: Curl, Uring;
    atftp_epoll: Atftp, Epoll;
    atftp_uring: Atftp, Uring;
    busybox_epoll: Busybox, Epoll;
    busybox_uring: Busybox, Uring;
}

/// Traversal spellings no client might produce, sent raw: each must get an
/// ERROR packet, never DATA or OACK. (`..` names the root's parent, a
/// directory: the tftpd-hpa stand-in answers it with an OACK and fails here.)
#[test]
fn traversal_refused_raw() {
    let fx = Fixture::new(&[SMALL]);
    for io in [Io::Epoll, Io::Uring] {
        let mut server = Server::spawn(&fx.root(), &ServerConfig::new(io));
        for name in [
            "../outside/secret.txt",
            "/../outside/secret.txt",
            "sub/../../outside/secret.txt",
            "..",
        ] {
            for options in [&[][..], &[("tsize", "0"), ("blksize", "1468")][..]] {
                let reply = exchange(
                    server.addr_v4(),
                    &rrq(name, options),
                    Duration::from_secs(3),
                );
                match reply {
                    Some((p, _)) if p.starts_with(&[0, 5]) => {}
                    Some((p, from)) => panic!(
                        "{io:?}: RRQ {name:?} {options:?}: expected ERROR, got {} from {from}",
                        packet_summary(&p)
                    ),
                    None => {
                        panic!("{io:?}: RRQ {name:?} {options:?}: expected ERROR, got no reply")
                    }
                }
            }
        }
        server.assert_alive();
        server.stop();
    }
}

/// `--single-port`: replies come from the listening port; windowed atftp and
/// plain tftp-hpa still work (one file each, including the wrap).
#[test]
fn single_port_mode() {
    let fx = Fixture::new(&[MULTIPLE, LARGE]);
    for io in [Io::Epoll, Io::Uring] {
        let mut cfg = ServerConfig::new(io);
        cfg.single_port = true;
        let server = Server::spawn(&fx.root(), &cfg);
        for (client, file, blksize) in [
            (Client::Atftp, MULTIPLE, BIG_BLKSIZE),
            (Client::TftpHpa, LARGE, 512),
        ] {
            let local = fx.download_path(&format!("single-{:?}-{}", client, file.name));
            let g = Get {
                server: server.addr_v4(),
                remote: file.name,
                local: &local,
                blksize,
                empty: false,
                trace: false,
            };
            let out = client.get(&g, &fx.downloads());
            assert!(
                client.succeeded(&out),
                "single-port {io:?}: {}",
                out.describe()
            );
            verify_same(&fx.root().join(file.name), &local)
                .unwrap_or_else(|e| panic!("single-port {io:?}: {e}"));
        }
        server.stop();
    }
}

/// Listening on both 127.0.0.1 and [::1]: curl and tftp-hpa over IPv6.
#[test]
fn ipv6_loopback() {
    if ServerKind::from_env() == ServerKind::TftpdHpa {
        // The stand-in binds one address; nothing to learn from it here.
        eprintln!("ipv6_loopback: not meaningful against the tftpd-hpa stand-in");
        return;
    }
    let fx = Fixture::new(&[SMALL, MULTIPLE]);
    for io in [Io::Epoll, Io::Uring] {
        let mut cfg = ServerConfig::new(io);
        cfg.ipv6 = true;
        let server = Server::spawn(&fx.root(), &cfg);
        for addr in [server.addr_v6(), server.addr_v4()] {
            for client in [Client::Curl, Client::TftpHpa] {
                let local = fx.download_path(&format!("{}-{:?}", addr.ip(), client));
                let g = Get {
                    server: addr,
                    remote: MULTIPLE.name,
                    local: &local,
                    blksize: BIG_BLKSIZE,
                    empty: false,
                    trace: false,
                };
                let out = client.get(&g, &fx.downloads());
                assert!(client.succeeded(&out), "{addr} {io:?}: {}", out.describe());
                verify_same(&fx.root().join(MULTIPLE.name), &local)
                    .unwrap_or_else(|e| panic!("{addr} {io:?}: {e}"));
            }
        }
        server.stop();
    }
}

/// The harness itself: deterministic content, mismatch detection, packets.
#[test]
fn harness_self_check() {
    assert_eq!(pattern_bytes("a", 100), pattern_bytes("a", 100));
    assert_ne!(pattern_bytes("a", 100), pattern_bytes("b", 100));
    assert_eq!(
        &pattern_bytes("a", 1000)[..100],
        &pattern_bytes("a", 100)[..]
    );
    assert_eq!(
        rrq("f", &[("tsize", "0")]),
        b"\x00\x01f\x00octet\x00tsize\x000\x00"
    );
    const {
        assert!(
            MULTIPLE.size.is_multiple_of(512) && MULTIPLE.size.is_multiple_of(BIG_BLKSIZE as u64)
        );
        assert!(
            LARGE.size / 512 + 1 > 65_536,
            "large file must wrap the block number"
        );
    }

    let fx = Fixture::new(&[SMALL]);
    let want = fx.root().join(SMALL.name);
    let got = fx.download_path("copy");
    assert!(
        verify_same(&want, &got).is_err(),
        "missing download must fail"
    );
    let mut bytes = std::fs::read(&want).unwrap();
    std::fs::write(&got, &bytes).unwrap();
    verify_same(&want, &got).unwrap();
    bytes[SMALL.size as usize - 1] ^= 1;
    std::fs::write(&got, &bytes).unwrap();
    let err = verify_same(&want, &got).unwrap_err();
    assert!(
        err.contains(&format!("first difference at byte {}", SMALL.size - 1)),
        "{err}"
    );
}

/// netascii (tftp-hpa's default mode): the server sends every LF as CR LF
/// and every CR as CR NUL, and tftp-hpa in netascii mode decodes that back
/// into the file's exact bytes, across block boundaries; a raw RRQ shows
/// the encoding on the wire.
#[test]
fn netascii_round_trip() {
    let fx = Fixture::new(&[]);
    // Lines, a DOS line end, bare CRs and a CR on a block boundary (511).
    let mut text = b"DEFAULT menu.c32\nPROMPT 0\r\nLABEL local\rx\0y\n".to_vec();
    text.resize(511, b'.');
    text.extend_from_slice(b"\r\n\r\rend\n");
    text.extend((0..3000u32).map(|i| {
        if i % 61 == 0 {
            b'\n'
        } else {
            b'a' + (i % 26) as u8
        }
    }));
    std::fs::write(fx.root().join("pxelinux.cfg"), &text).unwrap();
    for io in [Io::Epoll, Io::Uring] {
        let server = Server::spawn(&fx.root(), &ServerConfig::new(io));
        let local = fx.download_path(&format!("netascii-{io:?}"));
        let args: Vec<String> = ["-v", "-m", "netascii"]
            .into_iter()
            .map(String::from)
            .chain([
                server.addr_v4().ip().to_string(),
                server.addr_v4().port().to_string(),
                "-c".into(),
                "get".into(),
                "pxelinux.cfg".into(),
                local.display().to_string(),
            ])
            .collect();
        let out = run_with_timeout("tftp", &args, &fx.downloads(), CLIENT_TIMEOUT);
        assert!(
            Client::TftpHpa.succeeded(&out),
            "{io:?}: {}",
            out.describe()
        );
        let got = std::fs::read(&local).unwrap();
        assert!(
            got == text,
            "{io:?}: netascii download differs from the file"
        );

        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sock.send_to(b"\x00\x01pxelinux.cfg\x00netascii\x00", server.addr_v4())
            .unwrap();
        let mut reply = [0u8; 600];
        let (n, tid) = sock
            .recv_from(&mut reply)
            .unwrap_or_else(|e| panic!("{io:?}: no answer to a netascii RRQ: {e}"));
        // End the transfer, so that the server stops at once below.
        sock.send_to(&error_packet(0, "enough"), tid).unwrap();
        let wire = rackboot::tftp::netascii::encode(&text);
        assert_eq!(&reply[..4], &[0, 3, 0, 1], "{io:?}: DATA 1");
        assert_eq!(
            &reply[4..n],
            &wire[..512],
            "{io:?}: block 1 is the encoded bytes"
        );
        server.stop();
    }
}

//! The root over HTTP to real clients on loopback, on both I/O backends:
//! curl (GET, HEAD, ranges, several files over one kept-alive connection),
//! wget, hostile paths that must find nothing outside the root, and a file
//! rewritten in place during a download, which must end short (the
//! connection closed), never mixed; and a short wrk load, every body
//! compared with the file.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Fixture, Io, Server, ServerConfig, TestFile, free_tcp_port, pattern_bytes, require_program,
    write_pattern_file,
};

struct Http {
    _server: Server,
    base: String,
    addr: SocketAddr,
}

fn start(fixture: &Fixture, io: Io) -> Http {
    start_with(fixture, io, &[])
}

fn start_with(fixture: &Fixture, io: Io, extra: &[&str]) -> Http {
    let port = free_tcp_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cfg = ServerConfig::new(io);
    cfg.extra_args = vec!["--http-listen".into(), addr.to_string()];
    cfg.extra_args.extend(extra.iter().map(|a| a.to_string()));
    let server = Server::spawn(&fixture.root(), &cfg);
    Http {
        _server: server,
        base: format!("http://{addr}"),
        addr,
    }
}

/// ipxe.efi, boot.ipxe, an empty file and boot/vmlinuz (3 MiB).
fn fixture() -> Fixture {
    let fixture = Fixture::new(&[
        TestFile {
            name: "ipxe.efi",
            size: 300_000,
        },
        TestFile {
            name: "empty",
            size: 0,
        },
        TestFile {
            name: "boot.ipxe",
            size: 100,
        },
    ]);
    std::fs::create_dir_all(fixture.root().join("boot")).unwrap();
    write_pattern_file(&fixture.root().join("boot/vmlinuz"), 3 << 20, "vmlinuz");
    fixture
}

fn curl(args: &[&str]) -> std::process::Output {
    require_program("curl");
    Command::new("curl")
        .args(["-s", "--max-time", "30"])
        .args(args)
        .output()
        .expect("run curl")
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn gets_and_heads_and_ranges_are_byte_exact(io: Io) {
    let fixture = fixture();
    let http = start(&fixture, io);
    let root = fixture.root();
    let out = fixture.downloads();
    for name in ["ipxe.efi", "boot/vmlinuz", "empty", "boot.ipxe"] {
        let dest = out.join(name.replace('/', "_"));
        let o = curl(&[
            "--http1.1",
            "-o",
            dest.to_str().unwrap(),
            "-w",
            "%{http_code} %{content_type}",
            &format!("{}/{name}", http.base),
        ]);
        let info = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success() && info.starts_with("200 "),
            "{name}: {info}"
        );
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(root.join(name)).unwrap(),
            "{name}"
        );
        if name == "ipxe.efi" {
            assert!(info.ends_with("application/efi"), "{info}");
        }
    }
    // HEAD: the full length, no body.
    let o = curl(&["-I", &format!("{}/boot/vmlinuz", http.base)]);
    let head = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(header(&head, "content-length"), Some("3145728"));
    assert!(header(&head, "etag").is_some() && header(&head, "last-modified").is_some());
    // A range, a suffix range, and one past the end.
    let want = std::fs::read(root.join("boot/vmlinuz")).unwrap();
    let o = curl(&["-r", "100-199", &format!("{}/boot/vmlinuz", http.base)]);
    assert_eq!(o.stdout, &want[100..200]);
    let o = curl(&[
        "-H",
        "Range: bytes=-500",
        "-D",
        "-",
        &format!("{}/boot/vmlinuz", http.base),
    ]);
    let text = o.stdout;
    let split = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&text[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    assert_eq!(
        header(&head, "content-range"),
        Some("bytes 3145228-3145727/3145728")
    );
    assert_eq!(&text[split..], &want[want.len() - 500..]);
    let o = curl(&[
        "-r",
        "4000000-",
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        &format!("{}/boot/vmlinuz", http.base),
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "416");
    // A resumed download of another version: If-Match fails with 412.
    let o = curl(&[
        "-H",
        "If-Match: \"not-this\"",
        "-r",
        "0-9",
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        &format!("{}/ipxe.efi", http.base),
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "412");
}

fn several_files_share_one_connection(io: Io) {
    let fixture = fixture();
    let http = start(&fixture, io);
    let out = fixture.downloads();
    let mut args = vec![
        "--http1.1".to_string(),
        "-w".into(),
        "%{num_connects}\\n".into(),
    ];
    for (i, name) in ["ipxe.efi", "boot.ipxe", "boot/vmlinuz", "ipxe.efi"]
        .iter()
        .enumerate()
    {
        args.push("-o".into());
        args.push(out.join(format!("k{i}")).to_str().unwrap().into());
        args.push(format!("{}/{name}", http.base));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = curl(&args);
    assert!(o.status.success());
    let connects: Vec<u32> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(connects, [1, 0, 0, 0], "one connection for all four");
    assert_eq!(
        std::fs::read(out.join("k2")).unwrap(),
        std::fs::read(fixture.root().join("boot/vmlinuz")).unwrap()
    );
    // wget, as a second client.
    require_program("wget");
    let dest = out.join("wget-vmlinuz");
    let status = Command::new("wget")
        .args([
            "-q",
            "-T",
            "30",
            "-O",
            dest.to_str().unwrap(),
            &format!("{}/boot/vmlinuz", http.base),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read(dest).unwrap(),
        std::fs::read(fixture.root().join("boot/vmlinuz")).unwrap()
    );
}

/// Sends one raw request and returns the whole answer (the server closes
/// after errors that leave the stream out of step; otherwise we do).
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buf).to_string();
            let len: usize = header(&text, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let head = text.find("\r\n\r\n").unwrap() + 4;
            if buf.len() >= head + len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).to_string()
}

fn hostile_paths_find_nothing_outside_the_root(io: Io) {
    let fixture = fixture();
    std::os::unix::fs::symlink(
        fixture.outside().join("secret.txt"),
        fixture.root().join("link"),
    )
    .unwrap();
    let http = start(&fixture, io);
    let outside = fixture.outside();
    let outside_name = outside.file_name().unwrap().to_str().unwrap();
    let long = format!("/{}", "a".repeat(5000));
    let cases: Vec<(String, &[&str])> = vec![
        (format!("/../{outside_name}/secret.txt"), &["403", "404"]),
        (
            format!("/%2e%2e/{outside_name}/secret.txt"),
            &["403", "404"],
        ),
        (
            format!("/boot/%2E%2E/%2e%2e/{outside_name}/secret.txt"),
            &["403", "404"],
        ),
        ("/link".into(), &["403", "404"]),
        (
            format!("/{}", outside.join("secret.txt").display()),
            &["403", "404"],
        ),
        ("/ipxe.efi%00.txt".into(), &["400"]),
        (long, &["414"]),
        ("/nope".into(), &["404"]),
    ];
    for (target, allowed) in cases {
        let answer = raw(
            http.addr,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let code = answer.get(9..12).unwrap_or("");
        assert!(
            allowed.contains(&code),
            "{}: {code}\n{answer}",
            &target[..target.len().min(80)]
        );
        assert!(
            !answer.contains("this file lives outside"),
            "{target}: leaked"
        );
        assert!(
            !answer.contains(outside_name) && !answer.contains("/tmp"),
            "{target}: a path in the answer: {answer}"
        );
    }
    // Not a request at all, and a method we do not serve.
    let answer = raw(http.addr, b"\x16\x03\x01\x00\xa5garbage\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 505"),
        "{answer}"
    );
    let answer = raw(
        http.addr,
        b"DELETE /ipxe.efi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        answer.starts_with("HTTP/1.1 405") && answer.contains("Allow: GET, HEAD\r\n"),
        "{answer}"
    );
    assert!(fixture.root().join("ipxe.efi").exists());
}

fn a_file_rewritten_during_a_download_ends_it_short(io: Io) {
    let size = 48 << 20;
    let fixture = Fixture::new(&[TestFile {
        name: "big.img",
        size,
    }]);
    let http = start(&fixture, io);
    let path = fixture.root().join("big.img");
    let old = std::fs::read(&path).unwrap();
    let dest = fixture.downloads().join("big.img");
    require_program("curl");
    let mut child = Command::new("curl")
        .args([
            "-s",
            "--limit-rate",
            "4M",
            "--max-time",
            "60",
            "-o",
            dest.to_str().unwrap(),
            &format!("{}/big.img", http.base),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Let the download get going, then rewrite the file in place.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&dest).map_or(0, |m| m.len()) < (1 << 20) {
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all(&pattern_bytes("new version", size as usize))
        .unwrap();
    drop(f);
    let status = child.wait().unwrap();
    let got = std::fs::read(&dest).unwrap();
    assert!(
        !status.success(),
        "curl saw a complete download ({} bytes)",
        got.len()
    );
    assert!(got.len() < size as usize, "not short");
    assert_eq!(
        &got[..],
        &old[..got.len()],
        "the bytes received are the old version's, unmixed"
    );
    // New requests get the new version whole.
    let o = curl(&[
        "-o",
        fixture.downloads().join("after").to_str().unwrap(),
        &format!("{}/big.img", http.base),
    ]);
    assert!(o.status.success());
    assert_eq!(
        std::fs::read(fixture.downloads().join("after")).unwrap(),
        std::fs::read(&path).unwrap()
    );
}

fn connections_over_the_cap_get_503_and_retry_after(io: Io) {
    let fixture = fixture();
    let http = start_with(&fixture, io, &["--max-http-connections", "2"]);
    // Two kept-alive connections, each answered once (so both are held).
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(http.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"HEAD /ipxe.efi HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            s
        })
        .collect();
    // The third is answered as it is accepted (before it asks anything,
    // so the close cannot race a request into a reset).
    let mut third = TcpStream::connect(http.addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    third.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert_eq!(header(&answer, "retry-after"), Some("1"));
    // A slot frees when a connection closes.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = raw(
            http.addr,
            b"HEAD /ipxe.efi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// wrk's Lua hooks: every body compared with the file, counts summed over
/// wrk's threads, and wrk's own error counts, on one line.
const WRK_CHECK: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  local f = assert(io.open(args[1], "rb"))
  expected = f:read("*a")
  f:close()
  ok, bad, other = 0, 0, 0
end
function response(status, headers, body)
  if status ~= 200 then other = other + 1
  elseif body == expected then ok = ok + 1
  else bad = bad + 1 end
end
function done(summary, latency, requests)
  local o, b, x = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); b = b + t:get("bad"); x = x + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    "wrk-check ok=%d bad=%d other=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    o, b, x, e.connect, e.read, e.write, e.status, e.timeout))
end
"#;

/// A short wrk load (2 threads, 32 kept-alive connections, 2 s) over a
/// 300 kB file: every response 200 and byte-exact, no socket error, and the
/// every request wrk made was answered.
fn wrk_short_load_is_byte_exact(io: Io) {
    require_program("wrk");
    let fixture = fixture();
    let http = start(&fixture, io);
    let script = fixture.downloads().join("check.lua");
    std::fs::write(&script, WRK_CHECK).unwrap();
    let file = fixture.root().join("ipxe.efi");
    let out = Command::new("timeout")
        .args(["30", "wrk", "-t2", "-c32", "-d2s", "--timeout", "5s", "-s"])
        .arg(&script)
        .arg(format!("{}/ipxe.efi", http.base))
        .arg("--")
        .arg(&file)
        .output()
        .expect("run wrk");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "wrk failed:\n{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("wrk-check "))
        .unwrap_or_else(|| panic!("no wrk-check line:\n{text}"));
    let count = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    };
    assert!(count("ok") >= 100, "too few responses under load: {line}");
    for key in [
        "bad", "other", "connect", "read", "write", "status", "timeout",
    ] {
        assert_eq!(count(key), 0, "{key} != 0 under wrk: {line}\n{text}");
    }
}

macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[test]
            fn uring() {
                super::$name(super::Io::Uring);
            }
            #[test]
            fn epoll() {
                super::$name(super::Io::Epoll);
            }
        }
    };
}

on_both_backends!(gets_and_heads_and_ranges_are_byte_exact);
on_both_backends!(several_files_share_one_connection);
on_both_backends!(hostile_paths_find_nothing_outside_the_root);
on_both_backends!(a_file_rewritten_during_a_download_ends_it_short);
on_both_backends!(connections_over_the_cap_get_503_and_retry_after);
on_both_backends!(wrk_short_load_is_byte_exact);

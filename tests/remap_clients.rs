//! Per-client roots (`--unique-root ip`, dnsmasq's tftp-unique-root) and
//! `[[remap]]` rules, through real clients from two source addresses:
//! tftp-hpa from 127.0.0.1 and curl (TFTP and HTTP) bound to 127.0.0.2.
//! A hostile rule that rewrites every name out of the root finds nothing,
//! and a rule that does not compile stops the server with its file:line.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::{Io, Server, ServerConfig, free_tcp_port, require_program};

/// A root with shared files, a directory for 127.0.0.2 and per-client
/// configurations; returns it (kept alive by the TempDir).
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("127.0.0.2")).unwrap();
    std::fs::create_dir_all(root.join("configs")).unwrap();
    std::fs::write(root.join("boot.ipxe"), "shared script\n").unwrap();
    std::fs::write(root.join("127.0.0.2/boot.ipxe"), "script of 127.0.0.2\n").unwrap();
    std::fs::write(root.join("configs/127.0.0.1.cfg"), "config of 127.0.0.1\n").unwrap();
    std::fs::write(root.join("configs/127.0.0.2.cfg"), "config of 127.0.0.2\n").unwrap();
    dir
}

struct Running {
    server: Server,
    http: SocketAddr,
}

fn start(dir: &tempfile::TempDir, io: Io, extra: &[&str]) -> Running {
    let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let mut cfg = ServerConfig::new(io);
    cfg.extra_args = vec!["--http-listen".into(), http.to_string()];
    cfg.extra_args.extend(extra.iter().map(|a| a.to_string()));
    Running {
        server: Server::spawn(&dir.path().join("root"), &cfg),
        http,
    }
}

/// tftp-hpa from 127.0.0.1: the file's text, or `None` on an error.
fn tftp_hpa(server: &Server, file: &str, dir: &std::path::Path) -> Option<String> {
    require_program("tftp");
    let dest = dir.join(format!("hpa-{}", file.replace('/', "_")));
    let _ = std::fs::remove_file(&dest);
    let out = Command::new("timeout")
        .args(["20", "tftp", "-m", "binary", "127.0.0.1"])
        .arg(server.port().to_string())
        .args(["-c", "get", file])
        .arg(&dest)
        .output()
        .expect("run tftp");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if text.contains("Error") || !out.status.success() {
        return None;
    }
    std::fs::read_to_string(&dest).ok()
}

/// curl bound to 127.0.0.2: the body, or `None` on an error.
fn curl_from_2(url: &str) -> Option<String> {
    require_program("curl");
    let out = Command::new("curl")
        .args([
            "-s",
            "-f",
            "--max-time",
            "20",
            "--interface",
            "127.0.0.2",
            url,
        ])
        .output()
        .expect("run curl");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn unique_root_by_ip(io: Io) {
    let dir = tree();
    let r = start(&dir, io, &["--unique-root", "ip"]);
    let port = r.server.port();
    assert_eq!(
        tftp_hpa(&r.server, "boot.ipxe", dir.path()).as_deref(),
        Some("shared script\n"),
        "127.0.0.1 has no directory: the shared root"
    );
    assert_eq!(
        curl_from_2(&format!("tftp://127.0.0.1:{port}/boot.ipxe")).as_deref(),
        Some("script of 127.0.0.2\n"),
        "127.0.0.2 gets its own directory over TFTP"
    );
    assert_eq!(
        curl_from_2(&format!("http://{}/boot.ipxe", r.http)).as_deref(),
        Some("script of 127.0.0.2\n"),
        "and over HTTP"
    );
}

fn remap_rules_per_client(io: Io) {
    let dir = tree();
    let config = dir.path().join("rackboot.toml");
    std::fs::write(
        &config,
        r#"
[[remap]]
match = '^/?pxelinux\.cfg/default$'
replace = 'configs/${ip}.cfg'
last = true

[[remap]]
match = '^never'
replace = 'x'
"#,
    )
    .unwrap();
    let r = start(&dir, io, &["--config", config.to_str().unwrap()]);
    let port = r.server.port();
    assert_eq!(
        tftp_hpa(&r.server, "pxelinux.cfg/default", dir.path()).as_deref(),
        Some("config of 127.0.0.1\n")
    );
    assert_eq!(
        curl_from_2(&format!("tftp://127.0.0.1:{port}/pxelinux.cfg/default")).as_deref(),
        Some("config of 127.0.0.2\n")
    );
    assert_eq!(
        curl_from_2(&format!("http://{}/pxelinux.cfg/default", r.http)).as_deref(),
        Some("config of 127.0.0.2\n")
    );
    // Names no rule matches are served as asked.
    assert_eq!(
        tftp_hpa(&r.server, "boot.ipxe", dir.path()).as_deref(),
        Some("shared script\n")
    );
}

fn hostile_rules_cannot_leave_the_root(io: Io) {
    let dir = tree();
    // A file beside the root that no request may reach.
    std::fs::write(dir.path().join("secret"), "outside\n").unwrap();
    let config = dir.path().join("rackboot.toml");
    std::fs::write(
        &config,
        r#"
[[remap]]
match = '^up$'
replace = '../secret'

[[remap]]
match = '^abs$'
replace = '/etc/passwd'

[[remap]]
match = '^many$'
replace = '../../../../../../../../etc/passwd'
"#,
    )
    .unwrap();
    let r = start(&dir, io, &["--config", config.to_str().unwrap()]);
    for name in ["up", "abs", "many"] {
        assert_eq!(
            tftp_hpa(&r.server, name, dir.path()),
            None,
            "{name} was served"
        );
        assert_eq!(
            curl_from_2(&format!("http://{}/{name}", r.http)),
            None,
            "{name} over HTTP"
        );
    }
}

#[test]
fn a_rule_that_does_not_compile_names_its_file_and_line() {
    let dir = tree();
    let config = dir.path().join("rackboot.toml");
    std::fs::write(
        &config,
        "listen = [\"127.0.0.1:0\"]\n\n[[remap]]\nmatch = 'a(b'\nreplace = 'c'\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "{}:3: remap rule 1: match \"a(b\"",
            config.display()
        )) && stderr.contains("fix the expression"),
        "{stderr}"
    );
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

on_both_backends!(unique_root_by_ip);
on_both_backends!(remap_rules_per_client);
on_both_backends!(hostile_rules_cannot_leave_the_root);

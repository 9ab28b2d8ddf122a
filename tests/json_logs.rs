//! `--log-format json` (and the TOML key `log_format`): every log line is
//! one JSON object with the same fields as the text line, so a log shipper
//! can take a finished transfer's client, file, bytes and outcome as they
//! are.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Fixture, Io, SMALL, Server, ServerConfig, require_program};

/// Fetches SMALL and a missing file with curl, stops the server and
/// returns its log lines parsed as JSON.
fn transfer_lines(server: Server) -> Vec<serde_json::Value> {
    require_program("curl");
    let port = server.port();
    for name in [SMALL.name, "missing.bin"] {
        let _ = Command::new("curl")
            .args(["-s", "--max-time", "10", "-o", "/dev/null"])
            .arg(format!("tftp://127.0.0.1:{port}/{name}"))
            .status()
            .expect("run curl");
    }
    // The transfer's line is written when it ends; wait for both lines
    // (the harness's readiness probe made a refused line of its own).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_tail().contains("\"file\":\"missing.bin\"")
        || !server.log_tail().contains("\"outcome\":\"Complete\"")
    {
        assert!(
            Instant::now() < deadline,
            "no read lines:\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = server.log_tail();
    drop(server);
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

fn check(lines: &[serde_json::Value]) {
    let read = lines
        .iter()
        .find(|l| l["message"] == "read")
        .expect("a read line");
    assert_eq!(read["file"], SMALL.name, "{read}");
    assert_eq!(read["bytes"], SMALL.size, "{read}");
    assert_eq!(read["outcome"], "Complete", "{read}");
    assert!(
        read["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{read}"
    );
    assert!(
        read["level"] == "INFO" && read["timestamp"].is_string(),
        "{read}"
    );
    let refused = lines
        .iter()
        .find(|l| l["message"] == "read refused" && l["file"] == "missing.bin")
        .expect("a refused line for missing.bin");
    assert_eq!(refused["outcome"], "File not found", "{refused}");
}

#[test]
fn the_flag_makes_every_line_json() {
    let fixture = Fixture::new(&[SMALL]);
    let mut cfg = ServerConfig::new(Io::Uring);
    cfg.extra_args = vec!["--log-format".into(), "json".into()];
    check(&transfer_lines(Server::spawn(&fixture.root(), &cfg)));
}

#[test]
fn the_configuration_key_does_too() {
    let fixture = Fixture::new(&[SMALL]);
    let config = fixture.dir.path().join("rackboot.toml");
    std::fs::write(&config, "log_format = \"json\"\n").unwrap();
    let mut cfg = ServerConfig::new(Io::Uring);
    cfg.extra_args = vec!["--config".into(), config.display().to_string()];
    check(&transfer_lines(Server::spawn(&fixture.root(), &cfg)));
}

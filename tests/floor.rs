//! tools/tftp-floor.rs, the yardstick bench.py measures the kernel's cost
//! with, must really serve what the lock-step scenarios (S1, S2) ask, byte
//! for byte: a floor that skipped work would flatter itself.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Fixture, free_udp_port, write_pattern_file};

#[test]
fn floor_serves_lock_step_downloads_byte_exact() {
    let fx = Fixture::new(&[]);
    // 42 KB as pxelinux.0; 2 MiB + 1 at blksize 1468 (an odd last block).
    write_pattern_file(&fx.root().join("pxelinux.0"), 43_131, "floor pxelinux");
    write_pattern_file(&fx.root().join("big"), 2 * 1024 * 1024 + 1, "floor big");
    let port = free_udp_port(false);
    let server = format!("127.0.0.1:{port}");
    let mut floor = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_tftp-floor"))
            .args(["--root", fx.root().to_str().unwrap(), "--listen", &server])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tftp-floor"),
    );
    let load = |extra: &[&str]| {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_rackboot-load"))
            .args([
                "--server",
                &server,
                "--verify-dir",
                fx.root().to_str().unwrap(),
            ])
            .args(["--scenario", "file", "--duration-limit", "60"])
            .args(extra)
            .output()
            .expect("run rackboot-load");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "rackboot-load {extra:?} failed:\n{text}"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "{text}");
        text
    };
    let s1 = load(&[
        "--file",
        "pxelinux.0",
        "--clients",
        "100",
        "--concurrency",
        "50",
    ]);
    assert!(s1.contains("100 ok, 0 failed"), "{s1}");
    let s2 = load(&[
        "--file",
        "big",
        "--clients",
        "8",
        "--concurrency",
        "8",
        "--blksize",
        "1468",
    ]);
    assert!(s2.contains("8 ok, 0 failed"), "{s2}");
    assert!(floor.0.try_wait().unwrap().is_none(), "tftp-floor exited");
}

/// The floor never exits by itself: stopped (by its PID) however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

//! Network namespaces with a bridge and a tap, and the processes run inside
//! them. Everything a test creates is torn down by `Drop`: the processes it
//! started (by PID, SIGTERM then SIGKILL) and then the namespace.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Prefix of every namespace these tests create: `rbpxe-<pid>-<n>-<tag>`.
const PREFIX: &str = "rbpxe-";
/// How long a process may take to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (package iproute2): {e}"));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Deletes namespaces left behind by earlier runs of these tests whose
/// test process is gone (killed before its guards ran). Only names with
/// our prefix and a dead owner PID are touched.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(Ok(pid)) = rest.split('-').next().map(str::parse::<i32>) else {
            continue;
        };
        if pid != std::process::id() as i32 && !pid_alive(pid) {
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// One test's network: namespace `name` holding bridge `br0`
/// (10.214.`n`.1/24 and fd00:214:`n`::1/64) with tap `tap0` attached.
pub struct Netns {
    pub name: String,
    pub n: u8,
}

pub const BRIDGE: &str = "br0";
pub const TAP: &str = "tap0";

impl Netns {
    pub fn create(tag: &str, n: u8) -> Netns {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        sweep_stale();
        let name = format!(
            "{PREFIX}{}-{}-{tag}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        // From here on Drop deletes it, whatever fails next.
        let ns = Netns { name, n };
        let addr4 = format!("{}/24", ns.server_addr());
        let addr6 = format!("fd00:214:{n}::1/64");
        let n_ = ns.name.as_str();
        ip(&["-n", n_, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            n_,
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ]);
        ip(&["-n", n_, "addr", "add", &addr4, "dev", BRIDGE]);
        ip(&[
            "-n", n_, "-6", "addr", "add", &addr6, "dev", BRIDGE, "nodad",
        ]);
        ip(&["-n", n_, "tuntap", "add", "dev", TAP, "mode", "tap"]);
        ip(&["-n", n_, "link", "set", TAP, "master", BRIDGE]);
        ip(&["-n", n_, "link", "set", TAP, "up"]);
        ip(&["-n", n_, "link", "set", BRIDGE, "up"]);
        ns
    }

    /// The bridge's address: TFTP server, proxy and DHCP server.
    pub fn server_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 214, self.n, 1)
    }

    /// `/run/netns/<name>`, for setns(2).
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip netns exec <name> program`: `ip` execs the program after setns,
    /// so the child's PID is the program's own.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Starts `cmd` (from [`Netns::command`]) with stdout and stderr in
    /// `log`.
    pub fn spawn(&self, what: &str, mut cmd: Command, log: &Path) -> Proc {
        let file = File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let cmdline = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file);
        // SAFETY: prctl is async-signal-safe. If the test process dies
        // without running its guards, the kernel kills the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: `{cmdline}`: {e}"));
        Proc {
            child,
            what: what.to_owned(),
            cmdline,
            log: log.to_owned(),
            exited: None,
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A process this test started; stopped (by its PID only) on drop.
pub struct Proc {
    child: Child,
    pub what: String,
    pub cmdline: String,
    pub log: PathBuf,
    exited: Option<std::process::ExitStatus>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// SIGTERM, then SIGKILL after a grace period; waits for it (bounded).
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let pid = self.child.id() as i32;
        // SAFETY: plain kill(2) of our own child's PID, which has not been
        // reaped yet (so it cannot have been reused).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline && self.exited().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `ready(log)` holds, failing if the process exits or
    /// `timeout` passes.
    pub fn wait_log(&mut self, timeout: Duration, ready: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log_text();
            if ready(&log) {
                return;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) before it was ready: {}\n--- log ---\n{log}",
                    self.what, self.cmdline
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} not ready after {timeout:?}: {}\n--- log ---\n{log}",
                    self.what, self.cmdline
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

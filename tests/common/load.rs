//! Running `rackboot-load` from a test: bounded, its JSON summary read back.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running rackboot-load, writing its summary to `json` and its output
/// to `log`.
pub struct Load {
    child: Child,
    json: std::path::PathBuf,
    log: std::path::PathBuf,
    /// Its own `--duration-limit`; it is killed a little after that.
    limit: Duration,
    started: Instant,
}

impl Load {
    pub fn start(args: &[String], limit: Duration, json: &Path, log: &Path) -> Load {
        let log_file = fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rackboot-load"))
            .args(args)
            .arg("--duration-limit")
            .arg(limit.as_secs().to_string())
            .arg("--json")
            .arg(json)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("start rackboot-load");
        Load {
            child,
            json: json.to_path_buf(),
            log: log.to_path_buf(),
            limit,
            started: Instant::now(),
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the end (bounded); its exit code, summary and output.
    pub fn finish(mut self) -> (Option<i32>, serde_json::Value, String) {
        let deadline = self.started + self.limit + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill(); // our own child, by PID
                let _ = self.child.wait();
                panic!(
                    "rackboot-load ignored its own --duration-limit:\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = fs::read_to_string(&self.log).unwrap_or_default();
        let summary = fs::read_to_string(&self.json)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_else(|| panic!("rackboot-load wrote no JSON summary ({status}):\n{output}"));
        (status.code(), summary, output)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill(); // our own child, by PID
            let _ = self.child.wait();
        }
    }
}

/// A number from the summary; panics naming the key when it is missing.
pub fn field(summary: &serde_json::Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary lacks `{key}`: {summary}"))
}

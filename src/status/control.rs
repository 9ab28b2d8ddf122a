//! The control socket: a Unix stream socket (mode 0600, by default
//! /run/rackboot/control.sock) on which `rackboot status` and
//! `rackboot reload` talk to the running server.
//!
//! One request line per connection, one answer, then the server closes:
//! - `status` → the table as one JSON document (see [`Table::to_json`]);
//! - `reload` → `ok` and the reload's notes, one per line, or `error: ` and
//!   the reason (file:line), as a SIGHUP would log it.
//!
//! A thread owns the [`Table`]: every [`TICK`] it drains the packet paths'
//! [`EventQueue`] into it (without waiting: the senders never have anyone
//! to wake) and answers the connections that arrived meanwhile (the
//! listening socket is non-blocking). A reload runs on the main thread,
//! which takes requests from [`Reloads`] as it waits for signals.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::event::{BootEvent, EventQueue, StatusSink};
use super::table::{self, ProcArp, Stage, Table};

/// Where the socket is unless `--control-socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/rackboot/control.sock";

/// How often the table takes in events and the socket is looked at.
pub const TICK: Duration = Duration::from_millis(100);

/// Events the packet paths may post between two ticks (more are dropped
/// and counted).
pub const QUEUE: usize = 16384;

/// Connections answered per tick, at most.
const ACCEPTS_PER_TICK: usize = 16;

/// How long a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a reload may take before the requester is told so.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// The heap the status machinery holds at most: the table and the event
/// queue (both allocated once), and the answer to one `status` request
/// while it is written.
pub fn memory_bound(capacity: usize) -> usize {
    Table::memory_bound(capacity)
        + QUEUE * (std::mem::size_of::<BootEvent>() + 8)
        + Table::json_bound(capacity)
}

type ReloadResult = Result<Vec<String>, String>;

/// A reload asked for on the socket, waiting for the main thread.
pub struct ReloadRequest {
    reply: Sender<ReloadResult>,
}

/// The main thread's end: reload requests to run.
pub struct Reloads {
    rx: Receiver<ReloadRequest>,
}

impl Reloads {
    /// Runs `reload` for each request waiting (without blocking) and
    /// answers the requester.
    pub fn answer(&self, reload: impl Fn() -> ReloadResult) {
        while let Ok(request) = self.rx.try_recv() {
            let _ = request.reply.send(reload());
        }
    }
}

/// The bound control socket and the status queue, before serving.
pub struct Control {
    path: PathBuf,
    listener: UnixListener,
    sink: StatusSink,
    queue: EventQueue,
    capacity: usize,
}

/// The running control thread.
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl Control {
    /// Binds the socket at `path` (creating its directory, mode 0755, when
    /// missing; the socket mode 0600). `None` (`--control-socket none`)
    /// turns it off. A socket that cannot be made is one warning line and
    /// no status: the server runs on.
    pub fn bind(path: Option<&Path>, capacity: usize) -> Option<Control> {
        let path = path?;
        match bind_socket(path) {
            Ok(listener) => {
                let (sink, queue) = StatusSink::bounded(QUEUE);
                Some(Control {
                    path: path.to_owned(),
                    listener,
                    sink,
                    queue,
                    capacity,
                })
            }
            Err(e) => {
                tracing::warn!(
                    "control socket {}: {e}; `rackboot status` and `rackboot reload` are off \
                     (choose another path with --control-socket PATH, or none)",
                    path.display()
                );
                None
            }
        }
    }

    /// Where the packet paths post their events.
    pub fn sink(&self) -> StatusSink {
        self.sink.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts the thread that owns the table and answers the socket.
    pub fn start(self) -> Result<(Running, Reloads), String> {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let stop = Arc::new(AtomicBool::new(false));
        let path = self.path.clone();
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("rackboot-control".into())
                .spawn(move || self.serve(&stop, &tx))
                .map_err(|e| format!("control socket: cannot start its thread: {e}"))?
        };
        Ok((
            Running {
                stop,
                thread: Some(thread),
                path,
            },
            Reloads { rx },
        ))
    }

    fn serve(self, stop: &AtomicBool, reloads: &Sender<ReloadRequest>) {
        let mut table = Table::new(self.capacity);
        let mut pending: Vec<(UnixStream, Receiver<ReloadResult>, Instant)> = Vec::new();
        let mut warned = false;
        while !stop.load(Ordering::Relaxed) {
            let now = table::now_ms();
            let mut arp = ProcArp::default();
            for event in self.queue.drain().take(QUEUE) {
                table.apply(&event, now, &mut arp);
            }
            for _ in 0..ACCEPTS_PER_TICK {
                match self.listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(waiting) = self.request(stream, &table, reloads) {
                            pending.push(waiting);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        if !warned {
                            tracing::warn!("control socket {}: accept: {e}", self.path.display());
                            warned = true;
                        }
                        break;
                    }
                }
            }
            pending.retain_mut(|(stream, reply, deadline)| {
                let answer = match reply.try_recv() {
                    Ok(Ok(notes)) => {
                        let mut text = String::from("ok\n");
                        for note in notes {
                            text.push_str(&note);
                            text.push('\n');
                        }
                        text
                    }
                    Ok(Err(e)) => format!("error: {e}\n"),
                    Err(TryRecvError::Disconnected) => {
                        "error: the server is stopping; nothing reloaded\n".into()
                    }
                    Err(TryRecvError::Empty) if Instant::now() > *deadline => {
                        "error: the reload did not finish in time\n".into()
                    }
                    Err(TryRecvError::Empty) => return true,
                };
                let _ = stream.write_all(answer.as_bytes());
                false
            });
            std::thread::sleep(TICK);
        }
    }

    /// Reads one request and answers it, or returns the connection and
    /// where its reload's result will come.
    fn request(
        &self,
        stream: UnixStream,
        table: &Table,
        reloads: &Sender<ReloadRequest>,
    ) -> Option<(UnixStream, Receiver<ReloadResult>, Instant)> {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
        let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
        let mut line = String::new();
        let read = BufReader::new((&stream).take(512)).read_line(&mut line);
        let mut stream = stream;
        if read.is_err() {
            return None;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["status", ..] => {
                let mut extra = serde_json::Map::new();
                extra.insert("dropped_events".into(), self.queue.dropped().into());
                extra.insert(
                    "status_memory_bound_bytes".into(),
                    memory_bound(self.capacity).into(),
                );
                let mut doc = table.to_json(table::now_ms(), extra);
                doc.push('\n');
                doc
            }
            ["reload"] => {
                let (tx, rx) = crossbeam_channel::bounded(1);
                match reloads.try_send(ReloadRequest { reply: tx }) {
                    Ok(()) => return Some((stream, rx, Instant::now() + RELOAD_TIMEOUT)),
                    Err(_) => "error: reloads are already waiting; try again\n".into(),
                }
            }
            _ => format!(
                "error: unknown request `{}`; the requests are `status` and `reload`\n",
                line.trim()
            ),
        };
        let _ = stream.write_all(answer.as_bytes());
        None
    }
}

impl Running {
    /// Stops the thread and removes the socket file (errors ignored: the
    /// server may no longer have the right to).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Creates the directory when missing, replaces a stale socket (one that
/// nobody answers on), binds with mode 0600, non-blocking.
fn bind_socket(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    }
    if std::fs::symlink_metadata(path).is_ok() {
        if UnixStream::connect(path).is_ok() {
            return Err("another rackboot answers there".into());
        }
        std::fs::remove_file(path).map_err(|e| format!("cannot replace the stale socket: {e}"))?;
    }
    // The socket file is created with the umask: no moment at wider modes.
    // SAFETY: umask only changes this process's creation mask; it is
    // restored right after the bind, before any thread starts.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| format!("cannot bind: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot set its mode: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make it non-blocking: {e}"))?;
    Ok(listener)
}

// ---------------------------------------------------------------------------
// The client side: `rackboot status` and `rackboot reload`
// ---------------------------------------------------------------------------

/// The socket a client talks to: `--control-socket`, else the
/// configuration file's `control_socket`, else the default.
pub fn client_path(cli: &crate::config::Cli) -> Result<PathBuf, String> {
    let named = match &cli.control_socket {
        Some(path) => Some(path.clone()),
        None => match &cli.config {
            Some(file) => {
                crate::config::FileConfig::load(file)
                    .map_err(|e| e.to_string())?
                    .control_socket
            }
            None => None,
        },
    };
    match named {
        Some(path) if path.as_os_str() == "none" => {
            Err("the control socket is off (--control-socket none)".into())
        }
        Some(path) => Ok(path),
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
    }
}

/// Sends one request line and returns the whole answer.
pub fn request(path: &Path, line: &str, timeout: Duration) -> Result<String, String> {
    let mut stream = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot reach the server at {}: {e} (is rackboot running? it says where its control \
             socket is at start; --control-socket PATH names another)",
            path.display()
        )
    })?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    stream
        .write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("{}: no answer: {e}", path.display()))?;
    Ok(answer)
}

/// `rackboot reload`: the server's answer, an error when it refused.
pub fn run_reload(path: &Path) -> Result<(), String> {
    let answer = request(path, "reload", RELOAD_TIMEOUT + Duration::from_secs(5))?;
    match answer.strip_prefix("ok") {
        Some(notes) => {
            println!("reloaded: new requests get the new configuration");
            for note in notes.lines().filter(|l| !l.is_empty()) {
                println!("note: {note}");
            }
            Ok(())
        }
        None => Err(answer
            .trim_end()
            .strip_prefix("error: ")
            .map(|e| format!("reload refused, the configuration stays as it was: {e}"))
            .unwrap_or_else(|| format!("unexpected answer: {answer:?}"))),
    }
}

/// `rackboot status`: the table once, or every `watch` seconds until
/// interrupted.
pub fn run_status(path: &Path, json: bool, watch: Option<u64>) -> Result<(), String> {
    loop {
        let answer = request(path, "status", CLIENT_TIMEOUT)?;
        let doc: serde_json::Value = serde_json::from_str(&answer).map_err(|_| {
            format!(
                "unexpected answer from {}: {}",
                path.display(),
                answer.trim()
            )
        })?;
        let text = if json {
            format!("{doc:#}\n")
        } else {
            render(&doc)
        };
        let mut out = std::io::stdout().lock();
        if watch.is_some() {
            // Clear the screen and home the cursor.
            let _ = out.write_all(b"\x1b[H\x1b[2J");
        }
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
        drop(out);
        match watch {
            Some(secs) => std::thread::sleep(Duration::from_secs(secs.max(1))),
            None => return Ok(()),
        }
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn ago(ms: u64) -> String {
    match ms / 1000 {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s => format!("{}h ago", s / 3600),
    }
}

/// The JSON document as a table: one line per machine, stage times
/// relative to the start of its boot.
pub fn render(doc: &serde_json::Value) -> String {
    let str_of = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let now = doc["now_unix_ms"].as_u64().unwrap_or(0);
    let machines = doc["machines"].as_array().cloned().unwrap_or_default();
    let mut rows: Vec<Vec<String>> = vec![
        [
            "MACHINE",
            "IP",
            "ARCH",
            "OFFER",
            "ACK",
            "BOOT",
            "CONFIG",
            "KERNEL",
            "INITRD",
            "LAST FILE",
            "FAILURE",
            "SEEN",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    ];
    for m in &machines {
        let mut row = vec![str_of(&m["key"]), str_of(&m["ip"]), str_of(&m["arch"])];
        for stage in Stage::ALL {
            let at = m["stages"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["stage"] == stage.name())
                .and_then(|s| s["at_ms"].as_u64());
            row.push(at.map_or("-".into(), seconds));
        }
        let other = m["other_files"].as_u64().unwrap_or(0);
        row.push(match m["last_file"]["name"].as_str() {
            Some(name) if other > 0 => format!("{name} (+{other} other)"),
            Some(name) => name.to_string(),
            None => "-".into(),
        });
        row.push(match m["failure"].as_object() {
            Some(f) => match f.get("file").and_then(|f| f.as_str()) {
                Some(file) if !file.is_empty() => {
                    format!("{}: {file}", f["reason"].as_str().unwrap_or("?"))
                }
                _ => f["reason"].as_str().unwrap_or("?").to_string(),
            },
            None => "-".into(),
        });
        row.push(ago(
            now.saturating_sub(m["last_seen_unix_ms"].as_u64().unwrap_or(now))
        ));
        rows.push(row);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "{} machine(s), most recent first (capacity {}, {} evicted; stage times from the first event of each boot)\n",
        machines.len(),
        doc["capacity"],
        doc["evicted"]
    );
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < columns {
                let pad = widths[c] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

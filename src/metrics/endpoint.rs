//! `--metrics-listen`: a small HTTP listener of its own that answers
//! `GET /metrics`, one connection at a time, on its own thread (scrapes are
//! rare; the packet paths never see it).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Exposition;

/// The content types served: OpenMetrics when asked for, else
/// Prometheus's classic text format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the metrics listener (before privileges are dropped).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("--metrics-listen {addr}: {e}")))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The running endpoint; dropping it stops the thread.
pub struct Endpoint {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves `exposition` on `listener` from a thread of its own.
pub fn spawn(listener: TcpListener, exposition: Exposition) -> io::Result<Endpoint> {
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new().name("metrics".into()).spawn({
        let stop = stop.clone();
        move || serve(listener, exposition, stop)
    })?;
    tracing::info!("metrics on http://{addr}/metrics");
    Ok(Endpoint {
        stop,
        thread: Some(thread),
    })
}

/// Serves scrapes until `stop` is set.
pub fn serve(listener: TcpListener, exposition: Exposition, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = answer(stream, &exposition) {
                    tracing::debug!(client = %peer, "metrics: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut fd = libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(&listener),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                unsafe { libc::poll(&mut fd, 1, 100) };
            }
            Err(e) => {
                tracing::warn!("metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads one request and answers it, then closes.
fn answer(mut stream: TcpStream, exposition: &Exposition) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut buf = [0u8; 8192];
    let mut len = 0;
    let (method, path, openmetrics) = loop {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let openmetrics = request.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("accept")
                        && String::from_utf8_lossy(h.value).contains("application/openmetrics-text")
                });
                break (
                    request.method.unwrap_or("").to_owned(),
                    request.path.unwrap_or("").to_owned(),
                    openmetrics,
                );
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => {
                return respond(
                    &mut stream,
                    "400 Bad Request",
                    "text/plain",
                    b"bad request\n",
                    true,
                );
            }
        }
    };
    let head = method == "HEAD";
    if method != "GET" && !head {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET /metrics\n",
            true,
        );
    }
    match path.split('?').next().unwrap_or("") {
        "/metrics" if openmetrics => {
            let body = exposition.render_openmetrics();
            respond(&mut stream, "200 OK", OPENMETRICS, body.as_bytes(), !head)
        }
        "/metrics" => {
            let body = exposition.render_text();
            respond(&mut stream, "200 OK", TEXT, body.as_bytes(), !head)
        }
        "/" => respond(
            &mut stream,
            "200 OK",
            "text/plain",
            b"rackboot: metrics at /metrics\n",
            !head,
        ),
        _ => respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            b"not found: try /metrics\n",
            !head,
        ),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if with_body {
        stream.write_all(body)?;
    }
    stream.flush()
}

//! What a run measured, and the three ways it is shown: a human summary,
//! JSON (`--json`) and an SVG picture (`--svg`) of throughput over time and
//! of the completion-time distribution. TFTP and HTTP transfers count
//! alike (payload or body bytes, per transfer and per pass). For the `dhcp`
//! scenario the throughput is ACKs per second and a pass is one
//! DISCOVER-to-ACK exchange.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::Outcome;

/// Width of one throughput sample.
pub const BUCKET: Duration = Duration::from_millis(100);
/// Failures described one by one in the summary; the rest are only counted.
const EXAMPLES: usize = 10;
const MIB: f64 = (1u64 << 20) as f64;

/// Counters and histograms, fed by the engine as things happen.
pub struct Recorder {
    start: Instant,
    /// Counting DHCP exchanges rather than TFTP bytes.
    dhcp: bool,
    /// Payload bytes (DHCP: ACKs) received per `BUCKET` since `start`.
    buckets: Vec<u64>,
    bytes: u64,
    transfers: u64,
    failed_transfers: u64,
    expected_misses: u64,
    unanswered: u64,
    passes: u64,
    /// Completion times of successful passes (a client's whole plan), µs.
    pass_us: Histogram<u64>,
    /// Completion times of successful transfers, µs.
    transfer_us: Histogram<u64>,
    /// The same pass times, kept for the CDF picture.
    pass_ms: Vec<f64>,
    clients_ok: u64,
    clients_failed: u64,
    failures: BTreeMap<&'static str, u64>,
    examples: Vec<String>,
    offers: u64,
    acks: u64,
    /// ACKs per boot file named.
    boot_files: BTreeMap<String, u64>,
    /// TCP connections opened for HTTP; `None` when nothing goes over HTTP.
    http_connections: Option<u64>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to one hour at 3 significant digits; larger values saturate.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl Recorder {
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            start,
            dhcp: false,
            buckets: Vec::new(),
            bytes: 0,
            transfers: 0,
            failed_transfers: 0,
            expected_misses: 0,
            unanswered: 0,
            passes: 0,
            pass_us: histogram(),
            transfer_us: histogram(),
            pass_ms: Vec::new(),
            clients_ok: 0,
            clients_failed: 0,
            failures: BTreeMap::new(),
            examples: Vec::new(),
            offers: 0,
            acks: 0,
            boot_files: BTreeMap::new(),
            http_connections: None,
        }
    }

    /// Counts HTTP connections too (the JSON gains `http_connections`).
    pub fn with_http(self) -> Recorder {
        Recorder {
            http_connections: Some(0),
            ..self
        }
    }

    /// A TCP connection was opened for HTTP.
    pub fn http_connection(&mut self) {
        *self.http_connections.get_or_insert(0) += 1;
    }

    /// A recorder for the `dhcp` scenario.
    pub fn for_dhcp(start: Instant) -> Recorder {
        Recorder {
            dhcp: true,
            ..Recorder::new(start)
        }
    }

    pub fn bytes(&mut self, now: Instant, n: u64) {
        if n == 0 {
            return;
        }
        self.count(now, n);
        self.bytes += n;
    }

    /// Adds `n` to the throughput bucket of `now`.
    fn count(&mut self, now: Instant, n: u64) {
        let bucket =
            (now.saturating_duration_since(self.start).as_millis() / BUCKET.as_millis()) as usize;
        if self.buckets.len() <= bucket {
            self.buckets.resize(bucket + 1, 0);
        }
        self.buckets[bucket] += n;
    }

    /// A proxy OFFER that passed every check.
    pub fn offer(&mut self) {
        self.offers += 1;
    }

    /// A boot server ACK that passed every check, naming `boot_file`.
    pub fn ack(&mut self, now: Instant, boot_file: &str) {
        self.acks += 1;
        self.count(now, 1);
        match self.boot_files.get_mut(boot_file) {
            Some(n) => *n += 1,
            None => {
                self.boot_files.insert(boot_file.to_string(), 1);
            }
        }
    }

    /// DHCP requests that went one retry interval without an answer.
    pub fn unanswered_requests(&mut self, n: u64) {
        self.unanswered += n;
    }

    /// A finished transfer (failures are also reported with `failure`).
    pub fn transfer(&mut self, outcome: &Outcome, elapsed: Duration, unanswered: bool) {
        match outcome {
            Outcome::Complete { .. } | Outcome::Accepted => {
                self.transfer_ended(true, elapsed, unanswered)
            }
            Outcome::Missing => {
                self.unanswered += u64::from(unanswered);
                self.expected_misses += 1;
            }
            Outcome::Failed(_) => self.transfer_ended(false, elapsed, unanswered),
        }
    }

    /// A transfer that succeeded or failed (failures are also reported
    /// with `failure`): a TFTP download, or an HTTP request, timed from the
    /// request (or the connect before it) to the last body byte.
    pub fn transfer_ended(&mut self, ok: bool, elapsed: Duration, unanswered: bool) {
        self.unanswered += u64::from(unanswered);
        if ok {
            self.transfers += 1;
            self.transfer_us
                .saturating_record(elapsed.as_micros().max(1) as u64);
        } else {
            self.failed_transfers += 1;
        }
    }

    pub fn failure(&mut self, kind: &'static str, detail: impl FnOnce() -> String) {
        *self.failures.entry(kind).or_insert(0) += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(detail());
        }
    }

    /// A client went through its whole plan once.
    pub fn pass(&mut self, elapsed: Duration) {
        self.passes += 1;
        self.pass_us
            .saturating_record(elapsed.as_micros().max(1) as u64);
        self.pass_ms.push(elapsed.as_secs_f64() * 1e3);
    }

    pub fn client_done(&mut self, ok: bool) {
        if ok {
            self.clients_ok += 1;
        } else {
            self.clients_failed += 1;
        }
    }

    /// The live progress line (`--progress`).
    pub fn progress_line(&self, now: Instant, active: usize) -> String {
        let secs = now.saturating_duration_since(self.start).as_secs_f64();
        // Throughput over the last second of complete buckets.
        let done = (secs / BUCKET.as_secs_f64()) as usize;
        let recent: u64 = self.buckets.iter().take(done).rev().take(10).sum();
        let window = (done.min(10) as f64 * BUCKET.as_secs_f64()).max(BUCKET.as_secs_f64());
        if self.dhcp {
            return format!(
                "{secs:6.1} s  clients: {} ok, {} failed, {active} running  offers: {}  acks: {}  {:.0} acks/s",
                self.clients_ok,
                self.clients_failed,
                self.offers,
                self.acks,
                recent as f64 / window
            );
        }
        format!(
            "{secs:6.1} s  clients: {} ok, {} failed, {active} running  transfers: {} ({} misses)  {:.1} MiB/s",
            self.clients_ok,
            self.clients_failed,
            self.transfers,
            self.expected_misses,
            recent as f64 / window / MIB
        )
    }

    /// Everything measured, once the run is over.
    pub fn summary(&self, run: RunInfo, seconds: f64, client_cpu_seconds: f64) -> Summary {
        let seconds = seconds.max(1e-9);
        let ms = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1e3
            }
        };
        Summary {
            scenario: run.scenario,
            server: run.server,
            clients: run.clients,
            concurrency: run.concurrency,
            ok: self.clients_ok,
            failed: self.clients_failed,
            passes: self.passes,
            transfers: self.transfers,
            failed_transfers: self.failed_transfers,
            expected_misses: self.expected_misses,
            bytes: self.bytes,
            seconds,
            mib_per_s: self.bytes as f64 / MIB / seconds,
            transfers_per_s: self.transfers as f64 / seconds,
            p50_ms: ms(&self.pass_us, 0.5),
            p90_ms: ms(&self.pass_us, 0.9),
            p99_ms: ms(&self.pass_us, 0.99),
            max_ms: ms(&self.pass_us, 1.0),
            transfer_p50_ms: ms(&self.transfer_us, 0.5),
            transfer_p99_ms: ms(&self.transfer_us, 0.99),
            transfer_max_ms: ms(&self.transfer_us, 1.0),
            unanswered_requests: self.unanswered,
            client_cpu_seconds,
            failures: self
                .failures
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            failure_examples: self.examples.clone(),
            offers: self.dhcp.then_some(self.offers),
            acks: self.dhcp.then_some(self.acks),
            offers_per_s: self.dhcp.then(|| self.offers as f64 / seconds),
            acks_per_s: self.dhcp.then(|| self.acks as f64 / seconds),
            boot_files: self.dhcp.then(|| self.boot_files.clone()),
            http_server: run.http_server,
            http_connections: self.http_connections,
        }
    }

    /// The SVG picture: throughput per `BUCKET` over time, and the CDF of
    /// pass completion times.
    pub fn svg(&self, title: &str) -> String {
        let unit = if self.dhcp { 1.0 } else { MIB };
        let throughput: Vec<(f64, f64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                (
                    i as f64 * BUCKET.as_secs_f64(),
                    b as f64 / unit / BUCKET.as_secs_f64(),
                )
            })
            .collect();
        let mut times = self.pass_ms.clone();
        times.sort_by(f64::total_cmp);
        let n = times.len() as f64;
        let cdf: Vec<(f64, f64)> = times
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, (i + 1) as f64 / n))
            .collect();
        let mut svg = String::new();
        let (w, h) = (900.0, 640.0);
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
            w / 2.0,
            escape(title)
        );
        let top = Panel {
            x: 80.0,
            y: 50.0,
            w: 780.0,
            h: 220.0,
        };
        let (y_label, top_title) = if self.dhcp {
            ("ACKs/s", "ACKs per 100 ms, as a rate")
        } else {
            ("MiB/s", "throughput per 100 ms")
        };
        top.draw(&mut svg, &throughput, "time (s)", y_label, top_title, false);
        let bottom = Panel {
            x: 80.0,
            y: 360.0,
            w: 780.0,
            h: 220.0,
        };
        bottom.draw(
            &mut svg,
            &cdf,
            "completion time (ms)",
            "fraction of passes",
            "completion-time distribution (CDF)",
            true,
        );
        svg.push_str("</svg>\n");
        svg
    }
}

/// A plot area with axes, ticks and one line.
struct Panel {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Panel {
    fn draw(
        &self,
        svg: &mut String,
        points: &[(f64, f64)],
        x_label: &str,
        y_label: &str,
        title: &str,
        steps: bool,
    ) {
        let x_max = nice_ceiling(points.iter().map(|p| p.0).fold(0.0, f64::max));
        let y_max = if steps {
            1.0
        } else {
            nice_ceiling(points.iter().map(|p| p.1).fold(0.0, f64::max))
        };
        let (x0, y0, w, h) = (self.x, self.y, self.w, self.h);
        let px = |x: f64| x0 + x / x_max * w;
        let py = |y: f64| y0 + h - y / y_max * h;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" font-size="13" text-anchor="middle">{}</text>"#,
            x0 + w / 2.0,
            y0 - 10.0,
            escape(title)
        );
        for i in 0..=5 {
            let f = f64::from(i) / 5.0;
            let (gx, gy) = (x0 + f * w, y0 + h - f * h);
            let _ = writeln!(
                svg,
                r##"<line x1="{gx:.1}" y1="{y0}" x2="{gx:.1}" y2="{}" stroke="#ddd"/>"##,
                y0 + h
            );
            let _ = writeln!(
                svg,
                r##"<line x1="{x0}" y1="{gy:.1}" x2="{}" y2="{gy:.1}" stroke="#ddd"/>"##,
                x0 + w
            );
            let _ = writeln!(
                svg,
                r#"<text x="{gx:.1}" y="{}" text-anchor="middle">{}</text>"#,
                y0 + h + 16.0,
                label(f * x_max)
            );
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                x0 - 6.0,
                gy + 4.0,
                label(f * y_max)
            );
        }
        let _ = writeln!(
            svg,
            r#"<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            x0 + w / 2.0,
            y0 + h + 36.0,
            escape(x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"#,
            x0 - 55.0,
            y0 + h / 2.0,
            x0 - 55.0,
            y0 + h / 2.0,
            escape(y_label)
        );
        if points.is_empty() {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle" fill="gray">no data</text>"#,
                x0 + w / 2.0,
                y0 + h / 2.0
            );
            return;
        }
        let mut path = String::new();
        let mut prev_y = 0.0;
        for (i, &(x, y)) in points.iter().enumerate() {
            if i == 0 {
                let _ = write!(
                    path,
                    "M{:.1},{:.1}",
                    px(if steps { 0.0 } else { x }),
                    py(if steps { 0.0 } else { y })
                );
            }
            if steps {
                let _ = write!(path, " L{:.1},{:.1}", px(x), py(prev_y));
            }
            let _ = write!(path, " L{:.1},{:.1}", px(x), py(y));
            prev_y = y;
        }
        let _ = writeln!(
            svg,
            r##"<path d="{path}" fill="none" stroke="#1f5fbf" stroke-width="1.5"/>"##
        );
    }
}

/// A round axis end at or above `v` (1 for 0): a power of ten times one of
/// a few steps, so the data fills most of the axis.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&c| c >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

fn label(v: f64) -> String {
    if v == 0.0 || v.abs() >= 10.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What the run was, for the summary.
pub struct RunInfo {
    pub scenario: String,
    pub server: String,
    pub clients: usize,
    pub concurrency: usize,
    /// Where HTTP requests went, if any did.
    pub http_server: Option<String>,
}

/// The JSON document (`--json`); the human summary shows the same.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub server: String,
    pub clients: usize,
    pub concurrency: usize,
    /// Clients whose every pass succeeded.
    pub ok: u64,
    /// Clients that failed a transfer or did not finish in time.
    pub failed: u64,
    /// Completed passes through a client's plan (more than `clients` with
    /// --repeat-for).
    pub passes: u64,
    /// Successful transfers (for `abandon`: requests the server accepted).
    pub transfers: u64,
    pub failed_transfers: u64,
    /// ERROR 1 answers to pxelinux configuration candidates.
    pub expected_misses: u64,
    /// Payload bytes received in order.
    pub bytes: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
    pub transfers_per_s: f64,
    /// Pass completion-time percentiles.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Per-transfer completion-time percentiles.
    pub transfer_p50_ms: f64,
    pub transfer_p99_ms: f64,
    pub transfer_max_ms: f64,
    /// Requests with no answer within one client retry interval.
    pub unanswered_requests: u64,
    /// CPU time (user + system) this tool used while running the clients.
    pub client_cpu_seconds: f64,
    pub failures: BTreeMap<String, u64>,
    pub failure_examples: Vec<String>,
    /// `dhcp` only: OFFERs and ACKs that passed every check, and their
    /// rates over the whole run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offers: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acks: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offers_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acks_per_s: Option<f64>,
    /// `dhcp` only: how many ACKs named each boot file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_files: Option<BTreeMap<String, u64>>,
    /// HTTP runs only: the HTTP server, and the TCP connections opened to
    /// it (one per client when every connection was kept alive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_connections: Option<u64>,
}

impl Summary {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a summary always serializes")
    }

    /// The servers loaded, for titles: `ADDR`, `http://ADDR`, or both.
    pub fn against(&self) -> String {
        match &self.http_server {
            Some(http) if *http == self.server => format!("http://{http}"),
            Some(http) => format!("{} and http://{http}", self.server),
            None => self.server.clone(),
        }
    }

    /// The human summary.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "rackboot-load: {} against {}: {} clients ({} at a time)",
            self.scenario,
            self.against(),
            self.clients,
            self.concurrency
        );
        let _ = writeln!(
            s,
            "  clients    {} ok, {} failed ({} passes)",
            self.ok, self.failed, self.passes
        );
        if let (Some(offers), Some(acks)) = (self.offers, self.acks) {
            let _ = writeln!(
                s,
                "  dhcp       {offers} offers, {acks} acks, {} unanswered requests",
                self.unanswered_requests
            );
            let _ = writeln!(
                s,
                "  rate       {:.2} s: {:.0} offers/s, {:.0} acks/s",
                self.seconds,
                self.offers_per_s.unwrap_or(0.0),
                self.acks_per_s.unwrap_or(0.0)
            );
            let _ = writeln!(
                s,
                "  completion p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (DISCOVER to ACK)",
                self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
            );
            for (file, n) in self.boot_files.iter().flatten() {
                let _ = writeln!(s, "  boot file  {file:?}: {n} acks");
            }
        } else {
            let _ = writeln!(
                s,
                "  transfers  {} ok, {} failed, {} expected misses, {} unanswered requests",
                self.transfers,
                self.failed_transfers,
                self.expected_misses,
                self.unanswered_requests
            );
            let _ = writeln!(
                s,
                "  data       {:.1} MiB in {:.2} s: {:.1} MiB/s, {:.1} transfers/s",
                self.bytes as f64 / MIB,
                self.seconds,
                self.mib_per_s,
                self.transfers_per_s
            );
            let _ = writeln!(
                s,
                "  completion p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (per pass)",
                self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
            );
            let _ = writeln!(
                s,
                "             p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (per transfer)",
                self.transfer_p50_ms, self.transfer_p99_ms, self.transfer_max_ms
            );
            if let (Some(server), Some(n)) = (&self.http_server, self.http_connections) {
                let _ = writeln!(s, "  http       {n} connections to {server}");
            }
        }
        let _ = writeln!(
            s,
            "  client CPU {:.2} s ({:.0}% of one core)",
            self.client_cpu_seconds,
            self.client_cpu_seconds / self.seconds * 100.0
        );
        for (kind, count) in &self.failures {
            let _ = writeln!(s, "  FAILED     {count} x {kind}");
        }
        for example in &self.failure_examples {
            let _ = writeln!(s, "    e.g. {example}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axis_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.7), 0.8);
        assert_eq!(nice_ceiling(1.3), 1.5);
        assert_eq!(nice_ceiling(2.7), 3.0);
        assert_eq!(nice_ceiling(730.0), 800.0);
        assert_eq!(nice_ceiling(9000.0), 10000.0);
    }

    #[test]
    fn summary_and_pictures() {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        r.bytes(start + Duration::from_millis(50), 1 << 20);
        r.bytes(start + Duration::from_millis(250), 1 << 20);
        r.transfer(
            &Outcome::Complete { bytes: 2 << 20 },
            Duration::from_millis(300),
            false,
        );
        r.transfer(&Outcome::Missing, Duration::from_millis(1), true);
        r.pass(Duration::from_millis(300));
        r.client_done(true);
        let s = r.summary(
            RunInfo {
                scenario: "file".into(),
                server: "127.0.0.1:69".into(),
                clients: 1,
                concurrency: 1,
                http_server: None,
            },
            0.5,
            0.01,
        );
        assert_eq!(
            (
                s.ok,
                s.failed,
                s.transfers,
                s.expected_misses,
                s.unanswered_requests
            ),
            (1, 0, 1, 1, 1)
        );
        assert!((s.mib_per_s - 4.0).abs() < 1e-9);
        assert!((s.p50_ms - 300.0).abs() < 1.0);
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        for key in [
            "clients",
            "ok",
            "failed",
            "transfers",
            "expected_misses",
            "bytes",
            "seconds",
            "mib_per_s",
            "transfers_per_s",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "max_ms",
            "unanswered_requests",
            "client_cpu_seconds",
        ] {
            assert!(json.get(key).is_some(), "JSON lacks {key}");
        }
        let svg = r.svg("test <run>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("test &lt;run&gt;"));
        assert_eq!(svg.matches("<path").count(), 2);
        assert!(json.get("acks").is_none(), "DHCP keys only for dhcp runs");
        assert!(
            json.get("http_connections").is_none(),
            "HTTP keys only for HTTP runs"
        );
    }

    #[test]
    fn http_summary() {
        let start = Instant::now();
        let mut r = Recorder::new(start).with_http();
        r.http_connection();
        r.bytes(start + Duration::from_millis(10), 3 << 20);
        r.transfer_ended(true, Duration::from_millis(20), false);
        r.transfer_ended(false, Duration::from_millis(5), true);
        r.failure("http short body", || "client 0 `initrd.img`: cut".into());
        r.client_done(false);
        let s = r.summary(
            RunInfo {
                scenario: "file".into(),
                server: "127.0.0.1:8080".into(),
                clients: 1,
                concurrency: 1,
                http_server: Some("127.0.0.1:8080".into()),
            },
            1.0,
            0.01,
        );
        assert_eq!(
            (
                s.transfers,
                s.failed_transfers,
                s.unanswered_requests,
                s.bytes
            ),
            (1, 1, 1, 3 << 20)
        );
        assert_eq!(s.http_connections, Some(1));
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(json["http_connections"], 1);
        assert_eq!(json["http_server"], "127.0.0.1:8080");
        assert_eq!(json["failures"]["http short body"], 1);
        assert!(s.text().contains("1 connections to 127.0.0.1:8080"));
        assert!(
            s.text()
                .starts_with("rackboot-load: file against http://127.0.0.1:8080: ")
        );
    }

    #[test]
    fn dhcp_summary() {
        let start = Instant::now();
        let mut r = Recorder::for_dhcp(start);
        for ms in [10, 30] {
            r.offer();
            r.ack(start + Duration::from_millis(ms), "pxelinux.0");
            r.pass(Duration::from_millis(ms));
            r.client_done(true);
        }
        r.unanswered_requests(1);
        r.failure("timeout-ack", || "client 2: REQUEST unanswered".into());
        r.client_done(false);
        let s = r.summary(
            RunInfo {
                scenario: "dhcp".into(),
                server: "127.0.0.1:67".into(),
                clients: 3,
                concurrency: 3,
                http_server: None,
            },
            0.5,
            0.01,
        );
        assert_eq!((s.ok, s.failed, s.offers, s.acks), (2, 1, Some(2), Some(2)));
        assert_eq!(s.offers_per_s, Some(4.0));
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        for key in [
            "clients",
            "ok",
            "failed",
            "seconds",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "max_ms",
            "unanswered_requests",
            "failures",
            "failure_examples",
            "offers",
            "acks",
            "offers_per_s",
        ] {
            assert!(json.get(key).is_some(), "JSON lacks {key}");
        }
        assert_eq!(json["failures"]["timeout-ack"], 1);
        assert_eq!(json["boot_files"]["pxelinux.0"], 2);
        assert!(s.text().contains("2 offers, 2 acks, 1 unanswered"));
        assert!(r.svg("dhcp").contains("ACKs/s"));
        assert!(r.progress_line(start, 0).contains("acks: 2"));
    }
}

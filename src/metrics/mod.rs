//! Prometheus metrics. Each shard and the proxy thread count into their
//! own cells (`cell`: one writer each, no read-modify-write, no lock, no
//! allocation on the packet path); a scrape sums them across shards and
//! encodes the result with `prometheus-client`, off the packet path.

pub mod cell;
pub mod endpoint;
pub mod families;

use std::sync::Arc;

use crossbeam_utils::CachePadded;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

pub use cell::{Counter, Gauge, Histogram, HistogramSum};
pub use families::{Direction, HttpMetrics, ProxyMetrics, Refusal, TftpMetrics, TransferOutcome};

use crate::dhcp::{Arch, silence::Reason};

/// One shard's cells, on their own cache lines.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    pub tftp: TftpMetrics,
    pub http: HttpMetrics,
}

/// Every thread's cells, for the scrape to sum.
#[derive(Debug)]
pub struct ServerMetrics {
    pub shards: Vec<Arc<CachePadded<ShardMetrics>>>,
    pub proxy: Arc<CachePadded<ProxyMetrics>>,
}

impl ServerMetrics {
    pub fn new(shards: usize) -> ServerMetrics {
        ServerMetrics {
            shards: (0..shards).map(|_| Arc::default()).collect(),
            proxy: Arc::default(),
        }
    }

    /// Shard `index`'s cells.
    pub fn shard(&self, index: usize) -> Arc<CachePadded<ShardMetrics>> {
        self.shards[index % self.shards.len()].clone()
    }

    /// The sum of every shard's counter picked by `cell`.
    fn sum(&self, cell: impl Fn(&ShardMetrics) -> &Counter) -> u64 {
        self.shards.iter().map(|s| cell(s).get()).sum()
    }

    fn sum_gauge(&self, cell: impl Fn(&ShardMetrics) -> &Gauge) -> u64 {
        self.shards.iter().map(|s| cell(s).get()).sum()
    }

    fn sum_histogram(&self, cell: impl Fn(&ShardMetrics) -> &Histogram) -> HistogramSum {
        let mut sum = HistogramSum::default();
        for shard in &self.shards {
            cell(shard).add_to(&mut sum);
        }
        sum
    }
}

/// What a scrape reads besides the counters.
pub trait Gauges: Send + Sync + 'static {
    /// Files the cache holds open and the bytes of them mapped.
    fn cache_usage(&self) -> (u64, u64);
    /// The I/O backend in use, for build info.
    fn backend(&self) -> &'static str;
}

/// The scrape: everything rackboot exposes, in the Prometheus text format.
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    pub fn new(metrics: Arc<ServerMetrics>, gauges: Arc<dyn Gauges>) -> Exposition {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape { metrics, gauges }));
        Exposition { registry }
    }

    /// The current values in the OpenMetrics text format (what
    /// Prometheus asks for first).
    pub fn render_openmetrics(&self) -> String {
        let mut out = String::with_capacity(16 << 10);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The current values in Prometheus's classic text format (0.0.4), for
    /// scrapers and tools that ask for nothing else (`curl`, `promtool`).
    pub fn render_text(&self) -> String {
        prometheus_text(&self.render_openmetrics())
    }
}

/// OpenMetrics text to Prometheus text 0.0.4: a counter family is named
/// with its `_total` in HELP and TYPE, empty label sets go, and so does
/// the `# EOF` marker.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 1024);
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let name = rest.split(' ').next().unwrap_or("");
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push_str(&rest[name.len()..]);
            }
            None => out.push_str(&line.replacen("{} ", " ", 1)),
        }
        out.push('\n');
    }
    out
}

struct Scrape {
    metrics: Arc<ServerMetrics>,
    gauges: Arc<dyn Gauges>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

type Labels<'a> = [(&'static str, &'a str)];

/// Writes one counter family: each label set and its value.
fn counters<'l>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Vec<(&'static str, &'l str)>, u64)>,
) -> std::fmt::Result {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        let labels: &Labels = &labels;
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes one gauge family: each label set and its value.
fn gauges<'l>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Vec<(&'static str, &'l str)>, i64)>,
) -> std::fmt::Result {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        let labels: &Labels = &labels;
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A counter family of one sample, without labels.
fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    counters(enc, name, help, [(Vec::new(), value)])
}

/// A gauge family of one sample, without labels.
fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    gauges(enc, name, help, [(Vec::new(), value as i64)])
}

fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    bounds: &[f64],
    sum: &HistogramSum,
) -> std::fmt::Result {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        sum.sum(),
        sum.count,
        &sum.per_bucket(bounds),
        None,
    )
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let m = &self.metrics;
        let proxy = &m.proxy;

        gauges(
            &mut enc,
            "rackboot_build_info",
            "The running rackboot: version and I/O backend.",
            [(
                vec![
                    ("version", env!("CARGO_PKG_VERSION")),
                    ("backend", self.gauges.backend()),
                ],
                1i64,
            )],
        )?;

        // TFTP.
        counters(
            &mut enc,
            "rackboot_tftp_requests",
            "TFTP read and write requests received.",
            families::Direction::ALL.map(|d| {
                (
                    vec![("direction", d.label())],
                    m.sum(|s| &s.tftp.requests[d as usize]),
                )
            }),
        )?;
        let mut transfers = Vec::new();
        for d in families::Direction::ALL {
            for o in TransferOutcome::ALL {
                transfers.push((
                    vec![("direction", d.label()), ("outcome", o.label())],
                    m.sum(|s| &s.tftp.transfers[d as usize][o as usize]),
                ));
            }
        }
        counters(
            &mut enc,
            "rackboot_tftp_transfers",
            "TFTP transfers ended, by direction and outcome.",
            transfers,
        )?;
        counters(
            &mut enc,
            "rackboot_tftp_refusals",
            "TFTP requests refused before a transfer started, by reason.",
            Refusal::ALL.map(|r| {
                (
                    vec![("reason", r.label())],
                    m.sum(|s| &s.tftp.refused[r as usize]),
                )
            }),
        )?;
        counter(
            &mut enc,
            "rackboot_tftp_sent_bytes",
            "File bytes delivered over TFTP (acknowledged).",
            m.sum(|s| &s.tftp.sent_bytes),
        )?;
        counter(
            &mut enc,
            "rackboot_tftp_received_bytes",
            "Bytes received in TFTP uploads.",
            m.sum(|s| &s.tftp.received_bytes),
        )?;
        counter(
            &mut enc,
            "rackboot_tftp_blocks_resent",
            "TFTP data blocks sent again.",
            m.sum(|s| &s.tftp.blocks_resent),
        )?;
        counter(
            &mut enc,
            "rackboot_tftp_timeouts",
            "TFTP retransmission timeouts.",
            m.sum(|s| &s.tftp.timeouts),
        )?;
        counter(
            &mut enc,
            "rackboot_tftp_malformed_packets",
            "Datagrams on TFTP ports that were not valid TFTP or not expected.",
            m.sum(|s| &s.tftp.malformed),
        )?;
        gauge(
            &mut enc,
            "rackboot_tftp_active_transfers",
            "TFTP transfers running now.",
            m.sum_gauge(|s| &s.tftp.active),
        )?;
        histogram(
            &mut enc,
            "rackboot_tftp_transfer_duration_seconds",
            "How long completed TFTP reads took.",
            &families::DURATION_BOUNDS,
            &m.sum_histogram(|s| &s.tftp.duration),
        )?;
        histogram(
            &mut enc,
            "rackboot_tftp_transfer_rate_bytes_per_second",
            "Per-transfer rate of completed TFTP reads.",
            &families::RATE_BOUNDS,
            &m.sum_histogram(|s| &s.tftp.rate),
        )?;

        // HTTP.
        counter(
            &mut enc,
            "rackboot_http_connections",
            "HTTP connections accepted.",
            m.sum(|s| &s.http.connections),
        )?;
        counter(
            &mut enc,
            "rackboot_http_refused_connections",
            "HTTP connections turned away with 503 over the connection cap.",
            m.sum(|s| &s.http.refused),
        )?;
        counters(
            &mut enc,
            "rackboot_http_responses",
            "HTTP responses, by status class.",
            families::STATUS_CLASSES
                .iter()
                .enumerate()
                .map(|(i, c)| (vec![("code", *c)], m.sum(|s| &s.http.responses[i]))),
        )?;
        counter(
            &mut enc,
            "rackboot_http_aborted_responses",
            "HTTP responses cut short (file changed, client gone, stalled).",
            m.sum(|s| &s.http.aborted),
        )?;
        counter(
            &mut enc,
            "rackboot_http_sent_bytes",
            "HTTP body bytes sent.",
            m.sum(|s| &s.http.sent_bytes),
        )?;
        gauge(
            &mut enc,
            "rackboot_http_open_connections",
            "HTTP connections open now.",
            m.sum_gauge(|s| &s.http.open),
        )?;

        // proxyDHCP.
        let mut replies = Vec::new();
        for (k, kind) in families::REPLY_KINDS.iter().enumerate() {
            for arch in Arch::ALL {
                replies.push((
                    vec![
                        ("kind", families::reply_kind_label(*kind)),
                        ("arch", arch.name()),
                    ],
                    proxy.replies[k][arch as usize].get(),
                ));
            }
        }
        counters(
            &mut enc,
            "rackboot_proxy_replies",
            "proxyDHCP replies sent: offers on port 67, ACKs on 4011, by client architecture.",
            replies,
        )?;
        counters(
            &mut enc,
            "rackboot_proxy_silences",
            "proxyDHCP datagrams deliberately not answered, by reason.",
            Reason::ALL.map(|r| {
                (
                    vec![("reason", r.label())],
                    proxy.silences[r as usize].get(),
                )
            }),
        )?;
        counter(
            &mut enc,
            "rackboot_proxy_unsent_replies",
            "proxyDHCP replies the kernel refused to send.",
            proxy.unsent.get(),
        )?;

        // The file cache.
        let (files, bytes) = self.gauges.cache_usage();
        gauge(
            &mut enc,
            "rackboot_file_cache_files",
            "Files the cache holds open for clients.",
            files,
        )?;
        gauge(
            &mut enc,
            "rackboot_file_cache_mapped_bytes",
            "Bytes of those files mapped (or copied) in memory.",
            bytes,
        )?;
        Ok(())
    }
}

//! The sharded reactor: one thread per shard, each with its own listen
//! sockets (SO_REUSEPORT), transfers, timers and I/O backend, sharing
//! nothing on the data path but the read-only file mappings.

pub mod epoll;
pub mod http;
pub mod netlink;
pub mod proxy;
pub mod shard;
pub mod socket;
mod telemetry;
pub mod uring;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::files::FileCache;
use crate::tftp::{Limits, Timing};

/// Which I/O backend moves packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    /// io_uring where the kernel allows it, epoll otherwise.
    #[default]
    Auto,
    Uring,
    Epoll,
}

/// Everything a shard needs to know, fixed at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub listen: Vec<SocketAddr>,
    /// HTTP listen addresses (none: HTTP off).
    pub http_listen: Vec<SocketAddr>,
    /// Open HTTP connections, in all; more get 503 and Retry-After.
    pub max_http_connections: usize,
    pub shards: usize,
    pub io: IoMode,
    pub limits: Limits,
    pub timing: Timing,
    pub single_port: bool,
    pub port_range: Option<(u16, u16)>,
    pub allow_upload: bool,
    pub max_upload: u64,
    pub max_transfers: usize,
    pub max_per_client: usize,
    /// How long SIGINT/SIGTERM waits for running transfers.
    pub drain: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 69))],
            http_listen: Vec::new(),
            max_http_connections: 10_000,
            shards: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            io: IoMode::Auto,
            limits: Limits::default(),
            timing: Timing::default(),
            single_port: false,
            port_range: None,
            allow_upload: false,
            max_upload: 256 << 20,
            max_transfers: 10_000,
            max_per_client: 1_000,
            drain: Duration::from_secs(10),
        }
    }
}

/// State shared by all shards; touched when transfers start and end only.
pub struct Shared {
    pub settings: Settings,
    pub cache: FileCache,
    pub active: AtomicUsize,
    pub per_client: Mutex<HashMap<IpAddr, u32>>,
    /// Set on SIGINT/SIGTERM: refuse new transfers, finish running ones.
    pub draining: AtomicBool,
    /// Set when the drain time is up: end everything now.
    pub stop: AtomicBool,
    /// The machine's interfaces (addresses, MTUs), kept current.
    pub interfaces: Arc<crate::net::Interfaces>,
    /// Every thread's metric cells, each written only by its thread.
    pub metrics: Arc<crate::metrics::ServerMetrics>,
    /// Where replies and finished files are posted for `rackboot status`.
    pub status: crate::status::StatusSink,
    /// Set when metrics are on: the HTTP listener answers `/metrics` too.
    pub metrics_page: std::sync::OnceLock<crate::metrics::Exposition>,
}

impl Shared {
    pub fn new(
        settings: Settings,
        cache: FileCache,
        interfaces: Arc<crate::net::Interfaces>,
    ) -> Shared {
        let settings_shards = settings.shards.max(1);
        Shared {
            settings,
            cache,
            active: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            metrics: Arc::new(crate::metrics::ServerMetrics::new(settings_shards)),
            interfaces,
            status: crate::status::StatusSink::none(),
            metrics_page: std::sync::OnceLock::new(),
        }
    }

    /// Posts boot events to `status` (the default posts nowhere).
    pub fn with_status(mut self, status: crate::status::StatusSink) -> Shared {
        self.status = status;
        self
    }
}

/// The longest a shard sleeps, so it notices draining and stopping.
pub const MAX_WAIT: Duration = Duration::from_millis(50);

/// Whether io_uring works here (kernel support, no seccomp veto).
pub fn uring_available() -> Result<(), io::Error> {
    uring::probe()
}

/// A running server: its shard threads and their shared state.
type ShardThread = std::thread::JoinHandle<io::Result<(shard::ShardStats, http::HttpStats)>>;

pub struct Server {
    shared: Arc<Shared>,
    threads: Vec<ShardThread>,
    proxy: Option<std::thread::JoinHandle<proxy::ProxyStats>>,
    watcher: Option<std::thread::JoinHandle<()>>,
    pub backend: IoMode,
}

/// The proxyDHCP half, bound and ready to run beside the TFTP shards.
pub struct ProxyRun {
    pub sockets: proxy::ProxySockets,
    /// Published so a reload can swap it under the running proxy.
    pub policy: Arc<crate::published::Published<crate::dhcp::Policy>>,
    pub listen: proxy::ProxyListen,
}

/// A server whose sockets are bound but whose threads have not started:
/// the moment to drop privileges, before any request is served.
pub struct Bound {
    settings: Settings,
    cache: FileCache,
    per_shard: Vec<Vec<std::net::UdpSocket>>,
    http_per_shard: Vec<Vec<std::net::TcpListener>>,
    proxy_run: Option<ProxyRun>,
    backend: IoMode,
    status: crate::status::StatusSink,
}

impl Server {
    /// Binds and starts at once (when no privileges are to be dropped).
    pub fn start(
        settings: Settings,
        cache: FileCache,
        proxy_run: Option<ProxyRun>,
    ) -> io::Result<Server> {
        Server::bind(settings, cache, proxy_run)?.start()
    }

    /// Picks the backend and binds every listen socket for every shard.
    pub fn bind(
        settings: Settings,
        cache: FileCache,
        proxy_run: Option<ProxyRun>,
    ) -> io::Result<Bound> {
        let backend = match settings.io {
            IoMode::Epoll => IoMode::Epoll,
            IoMode::Uring => {
                uring_available().map_err(|e| {
                    io::Error::new(e.kind(), format!("--io uring: io_uring unavailable: {e}"))
                })?;
                IoMode::Uring
            }
            IoMode::Auto => match uring_available() {
                Ok(()) => IoMode::Uring,
                Err(e) => {
                    tracing::warn!("io_uring unavailable ({e}); using the epoll backend");
                    IoMode::Epoll
                }
            },
        };
        // SO_REUSEPORT would let a second server silently share the port
        // with one already running; a plain bind first refuses that.
        for &addr in &settings.listen {
            drop(std::net::UdpSocket::bind(addr).map_err(|e| socket::bind_error(addr, e))?);
        }
        // A shard serves TFTP, HTTP or both; none when both are off.
        let shards = if settings.listen.is_empty() && settings.http_listen.is_empty() {
            0
        } else {
            settings.shards.max(1)
        };
        let mut per_shard = Vec::with_capacity(shards);
        for _ in 0..shards {
            let sockets = settings
                .listen
                .iter()
                .map(|&a| socket::bind_listen(a))
                .collect::<io::Result<Vec<_>>>()?;
            per_shard.push(sockets);
        }
        // HTTP: the same number of shards, each with its own listeners.
        for &addr in &settings.http_listen {
            drop(std::net::TcpListener::bind(addr).map_err(|e| socket::bind_error(addr, e))?);
        }
        let mut http_per_shard = Vec::with_capacity(shards);
        for _ in 0..shards {
            let listeners = settings
                .http_listen
                .iter()
                .map(|&a| http::bind(a))
                .collect::<io::Result<Vec<_>>>()?;
            http_per_shard.push(listeners);
        }
        Ok(Bound {
            settings,
            cache,
            per_shard,
            http_per_shard,
            proxy_run,
            backend,
            status: crate::status::StatusSink::none(),
        })
    }
}

impl Bound {
    /// Posts boot events to `status` once started.
    pub fn with_status(mut self, status: crate::status::StatusSink) -> Bound {
        self.status = status;
        self
    }

    /// Starts the shard threads (and the proxy thread) on the bound sockets.
    pub fn start(self) -> io::Result<Server> {
        let Bound {
            settings,
            cache,
            per_shard,
            http_per_shard,
            proxy_run,
            backend,
            status,
        } = self;
        let (interfaces, route_socket) = netlink::start();
        let shared = Arc::new(Shared::new(settings, cache, interfaces).with_status(status));
        let watcher = match route_socket {
            Some(socket) => {
                let shared = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("interfaces".into())
                        .spawn(move || netlink::watch(socket, &shared.interfaces, &shared.stop))?,
                )
            }
            None => None,
        };
        let mut threads = Vec::new();
        for (index, (sockets, listeners)) in per_shard.into_iter().zip(http_per_shard).enumerate() {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .spawn(move || {
                    let mut core = shard::ShardCore::new(index, shared.clone(), sockets);
                    let mut http = http::HttpShard::new(index, shared.clone(), listeners);
                    match backend {
                        IoMode::Uring => uring::run(&mut core, &mut http, &shared)?,
                        _ => epoll::run(&mut core, &mut http, &shared)?,
                    }
                    Ok((core.metrics.tftp.summary(), http.metrics.http.summary()))
                })?;
            threads.push(handle);
        }
        let proxy = match proxy_run {
            Some(run) => {
                let shared = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("proxydhcp".into())
                        .spawn(move || {
                            proxy::run(run.sockets, run.policy, run.listen, shared, backend)
                        })?,
                )
            }
            None => None,
        };
        Ok(Server {
            shared,
            threads,
            proxy,
            watcher,
            backend,
        })
    }
}

impl Server {
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops taking requests, lets running transfers finish for up to the
    /// drain time, then ends the rest and joins the shards.
    pub fn shutdown(self) -> io::Result<shard::ShardStats> {
        let drain = self.shared.settings.drain;
        self.shared.draining.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + drain;
        let busy = || {
            self.shared.active.load(Ordering::SeqCst) > 0
                || http::SENDING.load(Ordering::SeqCst) > 0
        };
        while busy() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(p) = self.proxy {
            let stats = p
                .join()
                .map_err(|_| io::Error::other("the proxyDHCP thread panicked"))?;
            tracing::info!(
                offers = stats.offers,
                acks = stats.acks,
                unsent = stats.unsent,
                silent = %stats.silences,
                "proxyDHCP stopped"
            );
        }
        if let Some(w) = self.watcher {
            w.join()
                .map_err(|_| io::Error::other("the interface watcher panicked"))?;
        }
        let mut total = shard::ShardStats::default();
        let mut web = http::HttpStats::default();
        for t in self.threads {
            let (tftp, http) = t
                .join()
                .map_err(|_| io::Error::other("a shard panicked"))??;
            total += tftp;
            web += http;
        }
        if !self.shared.settings.http_listen.is_empty() {
            tracing::info!(
                connections = web.connections,
                responses = web.responses,
                ok = web.ok,
                client_errors = web.client_errors,
                server_errors = web.server_errors,
                bytes = web.bytes,
                cut_short = web.aborted,
                refused = web.refused,
                "HTTP stopped"
            );
        }
        Ok(total)
    }

    /// The metrics exposition of this server, for a scrape endpoint.
    pub fn exposition(&self) -> crate::metrics::Exposition {
        let gauges = Arc::new(ServerGauges {
            shared: self.shared.clone(),
            backend: self.backend,
        });
        crate::metrics::Exposition::new(self.shared.metrics.clone(), gauges)
    }

    /// Answers `/metrics` on the HTTP listener too (a file of that name at
    /// the root's top is then not served over HTTP).
    pub fn metrics_over_http(&self) {
        let _ = self.shared.metrics_page.set(self.exposition());
    }

    /// Whether any shard thread has exited (it only does on error).
    pub fn any_shard_exited(&self) -> bool {
        self.threads.iter().any(|t| t.is_finished())
    }
}

/// What a scrape reads from the running server besides its counters.
struct ServerGauges {
    shared: Arc<Shared>,
    backend: IoMode,
}

impl crate::metrics::Gauges for ServerGauges {
    fn cache_usage(&self) -> (u64, u64) {
        self.shared.cache.usage()
    }

    fn backend(&self) -> &'static str {
        match self.backend {
            IoMode::Uring => "io_uring",
            _ => "epoll",
        }
    }
}

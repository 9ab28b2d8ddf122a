//! The rackboot binary: parse the configuration, bind, drop privileges,
//! serve until SIGINT/SIGTERM, then drain.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use rackboot::config::{Cli, Command, Config, LogFormat};
use rackboot::files::{FileCache, Root};
use rackboot::reactor::{ProxyRun, Server, proxy};
use rackboot::reload::Running;
use rackboot::signals::Wake;

fn main() -> ExitCode {
    if cfg!(target_feature = "crt-static") {
        rackboot::service::lookups_from_files();
    }
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format() {
        // One JSON object per line: timestamp, level, target and the
        // line's fields, as in the text form.
        LogFormat::Json => logs.json().flatten_event(true).init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let result = match cli.command {
        Some(Command::Check) => rackboot::check::run(&cli),
        Some(Command::Init { force }) => rackboot::init::run(
            cli.root
                .as_deref()
                .unwrap_or(Path::new(rackboot::config::DEFAULT_ROOT)),
            force,
        ),
        Some(Command::Doctor {
            ref pcap,
            mac,
            duration,
        }) => rackboot::doctor::run(cli.interface.as_deref(), pcap.as_deref(), mac, duration),
        Some(Command::Status { json, watch }) => rackboot::status::control::client_path(&cli)
            .and_then(|path| rackboot::status::control::run_status(&path, json, watch)),
        Some(Command::Reload) => rackboot::status::control::client_path(&cli)
            .and_then(|path| rackboot::status::control::run_reload(&path)),
        None => serve(&built_in_default(cli)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rackboot: {e}");
            ExitCode::FAILURE
        }
    }
}

/// With nothing configured at all (no file, root, boot entry or
/// dnsmasq.conf), serve the built-in default: the tree `rackboot init`
/// lays out in /srv/tftp and its rackboot.toml, laid out first when the
/// root is missing or empty. A root that holds files is served as it is.
fn built_in_default(mut cli: Cli) -> Cli {
    let bare = cli.config.is_none()
        && cli.root.is_none()
        && cli.boot.is_empty()
        && cli.dnsmasq_conf.is_none()
        && cli.ipxe_script.is_none();
    if !bare {
        return cli;
    }
    let root = Path::new(rackboot::config::DEFAULT_ROOT);
    let config = rackboot::init::config_path(root);
    if !config.exists() && rackboot::init::is_empty_or_missing(root) {
        match rackboot::init::init(root, false) {
            Ok(report) => tracing::info!(
                "nothing configured and {} empty: laid out a bootable tree there with a menu                  ({} files, as `rackboot init` does) and {}",
                root.display(),
                report.written.len(),
                config.display()
            ),
            // Serving then fails with the root's own error, and says why.
            Err(e) => tracing::warn!("cannot lay out the default tree: {e}"),
        }
    }
    if config.exists() {
        tracing::info!("using {} (written by rackboot init)", config.display());
        cli.config = Some(config);
    }
    cli
}

fn serve(cli: &Cli) -> Result<(), String> {
    let config = Config::resolve(cli).map_err(|e| e.to_string())?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let root = Root::open(&config.root, config.root_options).map_err(|e| {
        format!(
            "TFTP root {}: {e}; create it (mkdir -p {}) or choose another with --root DIR",
            config.root.display(),
            config.root.display()
        )
    })?;
    // Each transfer holds one socket (files are shared); keep headroom for
    // the files themselves and the requests being opened.
    let open_files = rackboot::limits::raise_open_files();
    let fits = open_files.saturating_sub(256) as usize;
    if fits < config.settings.max_transfers {
        tracing::warn!(
            "the open-file limit ({open_files}) allows about {fits} concurrent transfers, below --max-transfers {}; \
             raise it (ulimit -Hn, LimitNOFILE=) for more",
            config.settings.max_transfers
        );
    }
    let shards = config.settings.shards;
    let cache = FileCache::new(root, shards).with_naming(config.naming.clone());
    let live = Arc::new(rackboot::reload::Live::start(&config)?);
    let policy = live.policy().cloned();
    let proxy_run = match &policy {
        Some(policy) => {
            let sockets =
                proxy::bind(&config.proxy_listen).map_err(|e| format!("proxyDHCP: {e}"))?;
            Some(ProxyRun {
                sockets,
                policy: policy.clone(),
                listen: config.proxy_listen.clone(),
            })
        }
        None => None,
    };
    let proxy_on = proxy_run.is_some();
    // SIGINT/SIGTERM/SIGHUP are taken by sigwait below; block them before
    // any thread starts so every thread inherits the mask.
    let signals = rackboot::signals::block_termination();
    let listen = config.settings.listen.clone();
    let http_listen = config.settings.http_listen.clone();
    let bound =
        Server::bind(config.settings.clone(), cache, proxy_run).map_err(|e| e.to_string())?;
    // The control socket too is bound before privileges are dropped; its
    // listening socket is kept open for the whole run.
    let control = rackboot::status::control::Control::bind(
        config.control_socket.as_deref(),
        config.status_capacity,
    );
    let bound = match &control {
        Some(control) => bound.with_status(control.sink()),
        None => bound,
    };
    let metrics_listener = (config.metrics_listen)
        .map(rackboot::metrics::endpoint::bind)
        .transpose()
        .map_err(|e| e.to_string())?;
    // Every socket is bound: drop privileges and sandbox the process before
    // any thread starts (both are inherited) and any request is served.
    rackboot::privileges::after_bind(config.user.as_deref())?;
    rackboot::sandbox::apply(&rackboot::sandbox::Allowed::for_serving(cli, &config))?;
    rackboot::sandbox::test_open(&cli.test_open_after_sandbox);
    // Watching before serving: no change made once requests are answered
    // is missed.
    live.watch_hosts_dir()?;
    let server = bound.start().map_err(|e| e.to_string())?;
    let metrics_endpoint = metrics_listener
        .map(|l| rackboot::metrics::endpoint::spawn(l, server.exposition()))
        .transpose()
        .map_err(|e| format!("metrics: {e}"))?;
    if metrics_endpoint.is_some() && !http_listen.is_empty() {
        server.metrics_over_http();
    }
    let control = match control {
        Some(control) => {
            tracing::info!(
                "control socket {} (rackboot status, rackboot reload)",
                control.path().display()
            );
            Some(control.start()?)
        }
        None => None,
    };
    for addr in &listen {
        tracing::info!(
            "serving {} over TFTP on {addr} ({shards} shards, {:?} backend)",
            config.root.display(),
            server.backend
        );
    }
    for addr in &http_listen {
        tracing::info!(
            "serving {} over HTTP on {addr} ({shards} shards)",
            config.root.display()
        );
    }
    if proxy_on {
        tracing::info!(
            "proxyDHCP on ports {} and {}{}",
            config.proxy_listen.dhcp_port,
            config.proxy_listen.pxe_port,
            config
                .proxy_listen
                .interface
                .as_deref()
                .map(|i| format!(" (interface {i})"))
                .unwrap_or_default()
        );
    }
    rackboot::service::ready("serving");
    let reload = |via: &str| {
        let running = Running {
            started: &config,
            live: &live,
            cache: &server.shared().cache,
        };
        rackboot::reload::reload_logged(cli, &running, via)
    };
    let signal = loop {
        let alive = || {
            rackboot::service::watchdog();
            if let Some((_, reloads)) = &control {
                reloads.answer(|| reload("control socket"));
            }
            server.any_shard_exited()
        };
        match rackboot::signals::wait_or_reload(&signals, alive) {
            Wake::Stop(signal) => break signal,
            Wake::Reload => drop(reload("SIGHUP")),
        }
    };
    tracing::info!("{signal}: finishing running transfers");
    rackboot::service::stopping();
    if let Some((running, _)) = control {
        running.stop();
    }
    let stats = server.shutdown().map_err(|e| e.to_string())?;
    tracing::info!(
        requests = stats.requests,
        completed = stats.completed,
        failed = stats.failed,
        refused = stats.refused,
        probes = stats.probes,
        malformed = stats.malformed,
        bytes = stats.bytes,
        "stopped"
    );
    Ok(())
}

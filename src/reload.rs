//! SIGHUP: read the configuration again, validate all of it, and swap it
//! in for new requests only. The proxy policy (boot entries, menus, MAC
//! rules, the iPXE script) and the naming rules (remap, per-client roots)
//! change at once; running transfers and responses keep the files they
//! opened. The rest (root, addresses, shards, user, the TFTP and HTTP
//! settings the shards were started with) takes effect at the next
//! start, and the reload says which changed. A
//! configuration that does not load, or does not validate, changes
//! nothing: the error names the file and line.
//!
//! The policy is built from two sources, kept together in [`Live`]: the
//! configuration in force and the last valid reading of `--hosts-dir`
//! (see [`crate::hosts_dir`]). A SIGHUP reads both again; a change in the
//! directory (its watcher) reads the directory again and rebuilds the
//! policy with the configuration in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::{Cli, Config};
use crate::dhcp::Policy;
use crate::files::FileCache;
use crate::hosts_dir::{self, Hosts};
use crate::published::Published;

/// What a reload needs of the running server.
pub struct Running<'a> {
    /// The configuration the server started with.
    pub started: &'a Config,
    /// The proxy's policy and what it is built from.
    pub live: &'a Live,
    pub cache: &'a FileCache,
}

/// The proxy policy for `config` and the hosts directory's rules.
pub fn policy_for(config: &Config, hosts: &Hosts) -> Result<Option<Policy>, String> {
    let Some(proxy) = &config.proxy else {
        return Ok(None);
    };
    let mut proxy = proxy.clone();
    hosts.merge_into(&mut proxy);
    // HTTP boot URLs written as paths point at our own HTTP port.
    let http_port = config.settings.http_listen.first().map_or(80, |a| a.port());
    Policy::new(proxy)
        .map(|p| Some(p.with_http_port(http_port)))
        .map_err(|e| format!("proxyDHCP configuration: {e}"))
}

/// The running proxy policy and its sources: the configuration in force
/// and the hosts directory's last valid reading. Whoever changes either
/// rebuilds and publishes the policy under the lock, so a SIGHUP and the
/// directory's watcher never publish a stale mix.
pub struct Live {
    policy: Option<Arc<Published<Policy>>>,
    /// The directory the server started with (`--hosts-dir`).
    hosts_dir: Option<PathBuf>,
    sources: Mutex<Sources>,
}

struct Sources {
    config: Config,
    hosts: Hosts,
}

/// The hosts directory's errors, one per line.
fn joined(errors: Vec<String>) -> String {
    errors.join("\n")
}

impl Live {
    /// Reads the hosts directory (an invalid one refuses the start, as an
    /// invalid configuration does) and builds the policy.
    pub fn start(config: &Config) -> Result<Live, String> {
        let hosts = match &config.hosts_dir {
            Some(dir) => hosts_dir::read_dir(dir).map_err(joined)?,
            None => Hosts::default(),
        };
        let policy = policy_for(config, &hosts)?.map(|p| Arc::new(Published::new(p)));
        if let Some(dir) = &config.hosts_dir {
            if policy.is_none() {
                tracing::warn!(
                    "hosts-dir {}: proxyDHCP is off (no boot entries), so its rules do nothing",
                    dir.display()
                );
            }
            tracing::info!("hosts-dir: {}", hosts.summary());
        }
        Ok(Live {
            policy,
            hosts_dir: config.hosts_dir.clone(),
            sources: Mutex::new(Sources {
                config: config.clone(),
                hosts,
            }),
        })
    }

    /// The proxy's policy, when proxyDHCP runs.
    pub fn policy(&self) -> Option<&Arc<Published<Policy>>> {
        self.policy.as_ref()
    }

    pub fn hosts_dir(&self) -> Option<&Path> {
        self.hosts_dir.as_deref()
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The hosts directory changed: reads it again and, when its rules
    /// changed and all of it is valid, publishes the policy rebuilt with
    /// the configuration in force. Returns the summary of an applied
    /// change, `None` when the rules are as they were; on errors (each
    /// naming file:line) the policy stays as it was.
    pub fn hosts_changed(&self) -> Result<Option<String>, Vec<String>> {
        let Some(dir) = &self.hosts_dir else {
            return Ok(None);
        };
        let mut sources = self.sources();
        let hosts = hosts_dir::read_dir(dir)?;
        if hosts.same_rules(&sources.hosts) {
            sources.hosts = hosts;
            return Ok(None);
        }
        if let Some(published) = &self.policy
            && let Some(policy) = policy_for(&sources.config, &hosts).map_err(|e| vec![e])?
        {
            published.publish(policy);
        }
        let summary = hosts.summary();
        sources.hosts = hosts;
        Ok(Some(summary))
    }

    /// Starts the watcher of the hosts directory, when there is one: each
    /// change is applied (one log line) or its errors logged.
    pub fn watch_hosts_dir(self: &Arc<Self>) -> Result<(), String> {
        let Some(dir) = self.hosts_dir.clone() else {
            return Ok(());
        };
        let live = Arc::clone(self);
        hosts_dir::watch(dir.clone(), move || {
            live.apply_hosts_dir();
            true
        })
        .map_err(|e| format!("hosts-dir {}: cannot watch it: {e}", dir.display()))?;
        // What changed between the first reading and the watch.
        self.apply_hosts_dir();
        Ok(())
    }

    /// [`Live::hosts_changed`], logged: one line per applied change, or
    /// each error.
    fn apply_hosts_dir(&self) {
        match self.hosts_changed() {
            Ok(Some(summary)) => tracing::info!("hosts-dir: {summary}"),
            Ok(None) => {}
            Err(errors) => {
                for e in errors {
                    tracing::error!("hosts-dir: {e}");
                }
                tracing::error!("hosts-dir: the rules stay as they were");
            }
        }
    }
}

/// [`reload`], with its outcome logged: `via` says what asked for it
/// ("SIGHUP", "control socket").
pub fn reload_logged(cli: &Cli, running: &Running<'_>, via: &str) -> Result<Vec<String>, String> {
    let result = reload(cli, running);
    match &result {
        Ok(notes) => {
            tracing::info!("{via}: configuration reloaded for new requests");
            for note in notes {
                tracing::warn!("{note}");
            }
        }
        Err(e) => tracing::error!("{via}: the configuration stays as it was: {e}"),
    }
    result
}

/// Reads and validates the configuration again and swaps it in. Returns
/// notes for the log (what waits for a restart); an error changes nothing.
pub fn reload(cli: &Cli, running: &Running<'_>) -> Result<Vec<String>, String> {
    let config = Config::resolve(cli).map_err(|e| e.to_string())?;
    let live = running.live;
    // Held until the new policy is out: the watcher waits meanwhile.
    let mut sources = live.sources();
    let hosts = match live.hosts_dir() {
        Some(dir) => hosts_dir::read_dir(dir).map_err(joined)?,
        None => Hosts::default(),
    };
    let policy = policy_for(&config, &hosts)?;
    let started = running.started;
    let mut notes = Vec::new();
    let mut restart = |what: &str, changed: bool| {
        if changed {
            notes.push(format!("{what} changed: takes effect at the next start"));
        }
    };
    restart("root", config.root != started.root);
    restart("listen", config.settings.listen != started.settings.listen);
    restart(
        "http_listen",
        config.settings.http_listen != started.settings.http_listen,
    );
    restart("shards", config.settings.shards != started.settings.shards);
    restart("user", config.user != started.user);
    let sockets_alike = config.settings.listen == started.settings.listen
        && config.settings.http_listen == started.settings.http_listen
        && config.settings.shards == started.settings.shards;
    restart(
        "a TFTP or HTTP setting (limits, options, ports, uploads, backend)",
        sockets_alike && config.settings != started.settings,
    );
    restart(
        "the root's options (lowercase, case_insensitive)",
        config.root_options != started.root_options,
    );
    restart(
        "the proxy's interface or ports",
        config.proxy_listen != started.proxy_listen,
    );
    restart("hosts_dir", config.hosts_dir != started.hosts_dir);
    if live.hosts_dir().is_some() && !hosts.same_rules(&sources.hosts) {
        tracing::info!("hosts-dir: {}", hosts.summary());
    }
    match (policy, live.policy()) {
        (Some(policy), Some(published)) => published.publish(policy),
        (Some(_), None) => notes.push(
            "boot entries added: proxyDHCP starts (binding ports 67 and 4011) at the next start"
                .into(),
        ),
        (None, Some(_)) => notes
            .push("no boot entries left: proxyDHCP keeps the old ones until the next start".into()),
        (None, None) => {}
    }
    running.cache.set_naming(config.naming.clone());
    sources.config = config;
    sources.hosts = hosts;
    Ok(notes)
}

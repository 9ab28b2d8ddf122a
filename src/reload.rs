//! SIGHUP: read the configuration again, validate all of it, and swap it
//! in for new requests only. The proxy policy (boot entries, menus, MAC
//! rules, the iPXE script) and the naming rules (remap, per-client roots)
//! change at once; running transfers and responses keep the files they
//! opened. The rest (root, addresses, shards, user, the TFTP and HTTP
//! settings the shards were started with) takes effect at the next
//! start, and the reload says which changed. A
//! configuration that does not load, or does not validate, changes
//! nothing: the error names the file and line.

use std::sync::Arc;

use crate::config::{Cli, Config};
use crate::dhcp::Policy;
use crate::files::FileCache;
use crate::published::Published;

/// What a reload needs of the running server.
pub struct Running<'a> {
    /// The configuration the server started with.
    pub started: &'a Config,
    /// The proxy's policy, when proxyDHCP runs.
    pub policy: Option<&'a Arc<Published<Policy>>>,
    pub cache: &'a FileCache,
}

/// The proxy policy for `config`, as the server builds it at start.
pub fn policy_for(config: &Config) -> Result<Option<Policy>, String> {
    let Some(proxy) = &config.proxy else {
        return Ok(None);
    };
    // HTTP boot URLs written as paths point at our own HTTP port.
    let http_port = config.settings.http_listen.first().map_or(80, |a| a.port());
    Policy::new(proxy.clone())
        .map(|p| Some(p.with_http_port(http_port)))
        .map_err(|e| format!("proxyDHCP configuration: {e}"))
}

/// Reads and validates the configuration again and swaps it in. Returns
/// notes for the log (what waits for a restart); an error changes nothing.
pub fn reload(cli: &Cli, running: &Running<'_>) -> Result<Vec<String>, String> {
    let config = Config::resolve(cli).map_err(|e| e.to_string())?;
    let policy = policy_for(&config)?;
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
    match (policy, running.policy) {
        (Some(policy), Some(published)) => published.publish(policy),
        (Some(_), None) => notes.push(
            "boot entries added: proxyDHCP starts (binding ports 67 and 4011) at the next start"
                .into(),
        ),
        (None, Some(_)) => notes
            .push("no boot entries left: proxyDHCP keeps the old ones until the next start".into()),
        (None, None) => {}
    }
    running.cache.set_naming(config.naming);
    Ok(notes)
}

//! `rackboot check`: validates a configuration without serving. Every
//! boot file it names must be servable from the root, every address must
//! exist here, every port must be free, and every file the boot loaders'
//! own configurations name (pxelinux, GRUB, iPXE) must be servable too;
//! those findings name the configuration file and line.

pub mod findings;
pub mod grub;
pub mod ipxe;
pub mod pxelinux;
pub mod tree;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;

use crate::config::{Cli, Config};
use crate::dhcp::Policy;
use crate::files::{ResolveError, Root};
use findings::Findings;
use tree::{Server, Target, Tree};

/// One thing a boot loader's configuration names: the 1-based line, the
/// directive, and the path (or label) as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<D> {
    pub line: usize,
    pub directive: D,
    pub path: String,
}

/// Runs every check, prints one line per finding, fails if any is an error.
pub fn run(cli: &Cli) -> Result<(), String> {
    let config = Config::resolve(cli).map_err(|e| e.to_string())?;
    let findings = check(&config);
    for f in &findings {
        println!("{f}");
    }
    let errors = findings.iter().filter(|f| f.starts_with("error")).count();
    if errors > 0 {
        return Err(format!("{errors} problem(s) found"));
    }
    println!("ok: configuration is ready to serve");
    Ok(())
}

/// All findings, each starting with `ok:`, `warning:` or `error:`.
pub fn check(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = config
        .warnings
        .iter()
        .map(|w| format!("warning: {w}"))
        .collect();
    let root = match Root::open(&config.root, config.root_options) {
        Ok(root) => {
            out.push(format!("ok: TFTP root {}", config.root.display()));
            Some(root)
        }
        Err(e) => {
            out.push(format!(
                "error: TFTP root {}: {e}; create it or choose another with --root DIR",
                config.root.display()
            ));
            None
        }
    };
    if let Some(proxy) = &config.proxy {
        if let Err(e) = Policy::new(proxy.clone()) {
            out.push(format!("error: proxyDHCP configuration: {e}"));
        }
        // iPXE given itself again chainloads forever: it needs a script.
        let is_ipxe = |f: &str| {
            let f = f.rsplit('/').next().unwrap_or(f).to_ascii_lowercase();
            f.contains("ipxe")
                || f.ends_with(".kpxe")
                || f.ends_with(".kkpxe")
                || f.starts_with("snponly")
        };
        if proxy.proxy.ipxe_script.is_none()
            && let Some(b) = proxy.boot.iter().find(|b| is_ipxe(&b.file))
        {
            out.push(format!(
                "warning: boot file {} looks like iPXE but no ipxe_script is set: iPXE will be handed itself \
                 again and loop; set --ipxe-script (or [proxy] ipxe_script)",
                b.file
            ));
        }
        // Each file once, with every use of it.
        let mut files: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for b in proxy.boot.iter().filter(|b| !b.file.is_empty()) {
            files
                .entry(b.file.clone())
                .or_default()
                .push(format!("{:?}", b.arch));
        }
        for m in &proxy.mac {
            files
                .entry(m.file.clone())
                .or_default()
                .push("MAC override".into());
        }
        if let Some(script) = proxy
            .proxy
            .ipxe_script
            .as_ref()
            .filter(|s| !s.contains("://"))
        {
            files
                .entry(script.clone())
                .or_default()
                .push("iPXE script".into());
        }
        if let Some(root) = &root {
            for (file, uses) in files {
                let origin = config.origins.iter().find(|(f, _)| *f == file);
                out.push(check_file(
                    root,
                    &file,
                    &uses.join(", "),
                    origin.map(|(_, at)| at.as_str()),
                ));
            }
        }
        for port in [config.proxy_listen.dhcp_port, config.proxy_listen.pxe_port] {
            out.push(check_port(
                SocketAddr::from(([0, 0, 0, 0], port)),
                "proxyDHCP",
            ));
        }
    }
    for &addr in &config.settings.listen {
        out.push(check_port(addr, "TFTP"));
    }
    if let Some(root) = &root {
        out.extend(check_loaders(root, config).iter().map(ToString::to_string));
    }
    out
}

/// The boot loaders' own configurations under the root: every pxelinux
/// configuration of the pxelinux loaders served, every `grub.cfg`, every
/// iPXE script.
pub fn check_loaders(root: &Root, config: &Config) -> Vec<findings::Finding> {
    let tree = Tree::scan(root, Server::of(config));
    let mut out = Findings::default();
    // The pxelinux loaders the proxy hands out, or, without proxyDHCP
    // (another DHCP server names the file), every one under the root.
    let loaders: Vec<String> = match &config.proxy {
        Some(proxy) => {
            let mut loaders = Vec::new();
            let files = proxy
                .boot
                .iter()
                .map(|b| &b.file)
                .chain(proxy.mac.iter().map(|m| &m.file));
            for file in files.filter(|f| pxelinux::is_loader(f)) {
                if let Target::Local(path) = Target::relative(file, "")
                    && tree.exists(&path)
                    && !loaders.contains(&path)
                {
                    loaders.push(path);
                }
            }
            loaders
        }
        None => tree
            .files()
            .filter(|f| pxelinux::is_loader(f))
            .map(str::to_owned)
            .collect(),
    };
    pxelinux::check(&tree, &loaders, &mut out);
    grub::check(&tree, &mut out);
    let script = config
        .proxy
        .as_ref()
        .and_then(|p| p.proxy.ipxe_script.as_deref());
    ipxe::check(&tree, script, &mut out);
    out.into_vec()
}

/// A boot file's finding; `origin` (`path:line`) is where the
/// configuration named it, when known.
fn check_file(root: &Root, file: &str, what: &str, origin: Option<&str>) -> String {
    let at = origin.map(|o| format!("{o}: ")).unwrap_or_default();
    match root.open_file(file.as_bytes()) {
        Ok(_) => format!("ok: boot file {file} ({what})"),
        Err(ResolveError::NotFound) => {
            let known = list_files(root.path(), 3);
            let hint = crate::suggest::closest(file, known.iter().map(String::as_str))
                .map(|near| format!("; did you mean {near}?"))
                .unwrap_or_default();
            format!(
                "error: {at}boot file {file} ({what}) not found under {}{hint}",
                root.path().display()
            )
        }
        Err(e) => format!("error: {at}boot file {file} ({what}) cannot be served: {e}"),
    }
}

/// Paths of regular files under `dir`, relative to it, to `depth` levels.
fn list_files(dir: &Path, depth: usize) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new(), 0)];
    while let Some((path, prefix, level)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten().take(10_000) {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            match entry.file_type() {
                Ok(t) if t.is_dir() && level + 1 < depth => {
                    stack.push((entry.path(), rel, level + 1))
                }
                Ok(t) if t.is_file() => found.push(rel),
                _ => {}
            }
        }
    }
    found
}

fn check_port(addr: SocketAddr, what: &str) -> String {
    match UdpSocket::bind(addr) {
        Ok(_) => format!("ok: {what} address {addr} is free"),
        Err(e) => format!(
            "error: {what}: {}",
            crate::reactor::socket::bind_error(addr, e)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;

    #[test]
    fn reports_typo_with_suggestion() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pxelinux.0"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("efi")).unwrap();
        std::fs::write(dir.path().join("efi/grubx64.efi"), b"x").unwrap();
        let cli = Cli {
            root: Some(dir.path().to_path_buf()),
            boot: vec!["bios=pxlinux.0".into(), "x64-uefi=efi/grubx64.efi".into()],
            listen: vec!["127.0.0.1:0".into()],
            dhcp_port: 0,
            pxe_port: 0,
            ..Cli::default()
        };
        let findings = check(&Config::resolve(&cli).unwrap());
        let text = findings.join("\n");
        assert!(
            text.contains("error: boot file pxlinux.0")
                && text.contains("did you mean pxelinux.0?"),
            "{text}"
        );
        assert!(text.contains("ok: boot file efi/grubx64.efi"), "{text}");
    }

    #[test]
    fn users_dnsmasq_conf_typo_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pxelinux.0"), b"x").unwrap();
        std::fs::write(dir.path().join("grubx64.efi"), b"x").unwrap();
        let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/dnsmasq/user-proxy.conf");
        let cli = Cli {
            dnsmasq_conf: Some(conf),
            root: Some(dir.path().to_path_buf()),
            listen: vec!["127.0.0.1:0".into()],
            dhcp_port: 0,
            pxe_port: 0,
            ..Cli::default()
        };
        let config = Config::resolve(&cli).unwrap();
        assert!(
            config.proxy.is_some(),
            "dhcp-range=...,proxy turns the proxy on"
        );
        let text = check(&config).join("\n");
        assert!(text.contains("ok: boot file pxelinux.0 (Bios)"), "{text}");
        assert!(
            text.contains("ok: boot file grubx64.efi (X64Uefi)"),
            "{text}"
        );
        assert_eq!(
            text.matches("user-proxy.conf:4: boot file pxlinux.0")
                .count(),
            1,
            "the finding names the dhcp-boot line: {text}"
        );
        assert!(text.contains("did you mean pxelinux.0?"), "{text}");
    }

    #[test]
    fn warns_when_ipxe_has_no_script() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("snponly.efi"), b"x").unwrap();
        let mut cli = Cli {
            root: Some(dir.path().to_path_buf()),
            boot: vec!["x64-uefi=snponly.efi".into()],
            listen: vec!["127.0.0.1:0".into()],
            dhcp_port: 0,
            pxe_port: 0,
            ..Cli::default()
        };
        let text = check(&Config::resolve(&cli).unwrap()).join("\n");
        assert!(
            text.contains("warning: boot file snponly.efi looks like iPXE"),
            "{text}"
        );
        cli.ipxe_script = Some("boot.ipxe".into());
        let text = check(&Config::resolve(&cli).unwrap()).join("\n");
        assert!(!text.contains("looks like iPXE"), "{text}");
    }
}

//! The Landlock sandbox: once serving starts, the kernel itself limits
//! which files the process may open, whatever user it runs as.
//!
//! `openat2(RESOLVE_BENEATH)` in `files` stays the first line of defence
//! (a name never resolves outside the root); this is the second: a path
//! that escaped resolution anyway is refused by the kernel (EACCES).
//!
//! Allowed, and nothing else:
//! - reading beneath the TFTP root (and writing there when uploads are on:
//!   they are stored inside the root);
//! - reading beneath the directories of the configuration files SIGHUP
//!   re-reads (`--config`, `--dnsmasq-conf`): editors replace a file by
//!   renaming another over it, and Landlock rules follow inodes, so the
//!   rule is on the directory (rules are recursive);
//! - reading beneath `--hosts-dir` (per-machine rules, re-read as they
//!   change);
//! - /proc/net/arp (per-MAC roots and `${mac}` remap rules) is opened
//!   before and read through its descriptor (`net::neighbours`).
//!
//! Handled with the best ABI both the kernel and the `landlock` crate know
//! (best effort); on a kernel without Landlock one line says so and serving
//! goes on.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, BitFlags, LandlockStatus, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus,
};

use crate::config::{Cli, Config};

/// The newest ABI this build knows; the kernel's own caps it.
const ABI_WANTED: ABI = ABI::V10;

/// What the running server may open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// Read only (read-write with `upload`).
    pub root: PathBuf,
    pub upload: bool,
    /// Directories read beneath (configuration, hosts).
    pub read_dirs: Vec<PathBuf>,
}

impl Allowed {
    /// The access the server started from `cli` and `config` needs.
    pub fn for_serving(cli: &Cli, config: &Config) -> Allowed {
        let mut read_dirs: Vec<PathBuf> = Vec::new();
        for file in [cli.config.as_deref(), cli.dnsmasq_conf.as_deref()]
            .into_iter()
            .flatten()
        {
            let dir = match file.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !read_dirs.contains(&dir) {
                read_dirs.push(dir);
            }
        }
        // Per-machine rules, listed and read as they change.
        if let Some(dir) = &config.hosts_dir
            && !read_dirs.contains(dir)
        {
            read_dirs.push(dir.clone());
        }
        Allowed {
            root: config.root.clone(),
            upload: config.settings.allow_upload,
            read_dirs,
        }
    }
}

/// Restricts this thread, and every thread it starts afterwards, to
/// `allowed`. Call it before the serving threads start. Errors only when a
/// rule cannot be built or applied on a kernel that has Landlock.
pub fn apply(allowed: &Allowed) -> Result<(), String> {
    let abi = ABI_WANTED;
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let write =
        read | AccessFs::WriteFile | AccessFs::MakeReg | AccessFs::RemoveFile | AccessFs::Truncate;
    let root_access: BitFlags<AccessFs> = if allowed.upload { write } else { read };
    let fd =
        |path: &Path| PathFd::new(path).map_err(|e| format!("sandbox: {}: {e}", path.display()));
    let mut rules = vec![PathBeneath::new(fd(&allowed.root)?, root_access)];
    for dir in &allowed.read_dirs {
        rules.push(PathBeneath::new(fd(dir)?, read));
    }
    // Opened now, read later through the descriptor.
    crate::net::neighbours::open_table();
    let status = Ruleset::default()
        // Not ResolveUnix: connecting to systemd's NOTIFY_SOCKET stays
        // possible on kernels that could forbid it.
        .handle_access(AccessFs::from_all(abi) & !AccessFs::ResolveUnix)
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(rules.into_iter().map(Ok::<_, landlock::RulesetError>)))
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("sandbox: {e}"))?;
    let kernel = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => format!("ABI {}", effective_abi as i32),
        LandlockStatus::NotEnabled => "Landlock not enabled in this kernel (lsm=)".into(),
        LandlockStatus::NotImplemented => "no Landlock in this kernel".into(),
    };
    let mut what = format!(
        "{} beneath {}",
        if allowed.upload {
            "read-write"
        } else {
            "read-only"
        },
        allowed.root.display()
    );
    for dir in &allowed.read_dirs {
        what += &format!(", reading beneath {}", dir.display());
    }
    match status.ruleset {
        RulesetStatus::FullyEnforced => {
            tracing::info!("sandbox: Landlock ({kernel}) enforced: files {what}")
        }
        RulesetStatus::PartiallyEnforced => tracing::info!(
            "sandbox: Landlock ({kernel}) enforced, without the newer rights this kernel lacks: files {what}"
        ),
        RulesetStatus::NotEnforced => {
            tracing::warn!("sandbox: Landlock unavailable ({kernel}); serving without the sandbox")
        }
    }
    Ok(())
}

/// TEST ONLY (the hidden `--test-open-after-sandbox PATH`): tries a plain
/// `open(PATH, O_RDONLY)`, no resolution of ours, once the sandbox is on,
/// and logs the outcome, so a test can show the kernel refuses a path that
/// escaped the root. Reads nothing.
pub fn test_open(paths: &[PathBuf]) {
    for path in paths {
        match std::fs::File::open(path) {
            Ok(_) => tracing::info!("test open after sandbox: {}: opened", path.display()),
            Err(e) => tracing::info!("test open after sandbox: {}: {e}", path.display()),
        }
    }
}

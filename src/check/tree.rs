//! The root as the boot loader checks see it: a listing (for "did you
//! mean" and for finding configuration files), reads and existence checks
//! that go through [`Root`] (so no configuration can make `check` read
//! outside the root), and the addresses that are this server (so URLs can
//! be told apart from files on other servers).

use std::io::Read;
use std::net::IpAddr;

use super::findings::{Finding, Level, Place};
use crate::config::Config;
use crate::files::{ResolveError, Root};
use crate::suggest::closest;

/// How deep the listing goes (`boot/grub/x86_64-efi/grub.cfg` is 4).
const LIST_DEPTH: usize = 6;
/// Most entries listed, in all: an unpacked ISO or two fit.
const LIST_MAX: usize = 100_000;
/// Largest configuration file read; larger ones are read this far.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// How deep includes (`INCLUDE`, `configfile`, `chain`) may nest.
pub const MAX_DEPTH: usize = 16;

/// The addresses clients reach this server at.
#[derive(Debug, Clone, Default)]
pub struct Server {
    addresses: Vec<IpAddr>,
}

impl Server {
    /// The specific addresses of `config`: TFTP and HTTP listen addresses,
    /// the proxy's `tftp_server`, the boot entries' servers and the hosts
    /// of their `http_url`s (wildcards say nothing, so they are left out).
    pub fn of(config: &Config) -> Server {
        let mut addresses: Vec<IpAddr> = config
            .settings
            .listen
            .iter()
            .chain(&config.settings.http_listen)
            .map(|a| a.ip())
            .collect();
        if let Some(proxy) = &config.proxy {
            addresses.extend(proxy.proxy.tftp_server.map(IpAddr::V4));
            addresses.extend(proxy.boot.iter().filter_map(|b| b.server.map(IpAddr::V4)));
            let urls = proxy
                .boot
                .iter()
                .filter_map(|b| b.http_url.as_deref())
                .chain(proxy.proxy.ipxe_script.as_deref());
            for url in urls {
                if let Some((_, host, _)) = split_url(url) {
                    addresses.extend(parse_host(host));
                }
            }
        }
        // A wildcard listen address serves every address of this host.
        if addresses.iter().any(IpAddr::is_unspecified) {
            addresses.extend(local_addresses());
        }
        addresses.retain(|a| !a.is_unspecified());
        Server { addresses }
    }

    /// Whether `host` (as written in a URL: `10.0.0.5`, `[::1]:8080`,
    /// `${next-server}`) is this server. A variable is taken to be: it is
    /// how configurations name the server that served them.
    pub fn is_this(&self, host: &str) -> bool {
        host.contains('$') || parse_host(host).is_some_and(|ip| self.addresses.contains(&ip))
    }
}

/// The addresses of this host's interfaces (none if they cannot be read).
fn local_addresses() -> Vec<IpAddr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, and
        // `ifa_addr`, when not null, points at a sockaddr of the family it
        // names.
        unsafe {
            let addr = (*cursor).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cursor = (*cursor).ifa_next;
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    out
}

/// The address in a URL's host part, without port or brackets.
fn parse_host(host: &str) -> Option<IpAddr> {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    host.parse()
        .ok()
        .or_else(|| host.rsplit_once(':')?.0.parse().ok())
}

/// Splits `scheme://host/path` into its lowercased scheme, the host (with
/// any port) and the path (with its leading `/`, without query or fragment).
pub fn split_url(text: &str) -> Option<(String, &str, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    Some((scheme.to_ascii_lowercase(), host, path))
}

/// Where a path written in a configuration points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A file under the root, by its path relative to the root.
    Local(String),
    /// Another server, or a disk: not checked.
    Elsewhere,
    /// A variable `check` cannot know: not checked.
    Unknown,
    /// `..` above the root: the server refuses it.
    Outside,
}

impl Target {
    /// `text` (a path or a URL) as a loader that resolves relative paths
    /// against `dir` (relative to the root) reads it. `tftp://` and
    /// `http://` URLs to this server are files under the root; other URLs
    /// are elsewhere; `$` anywhere makes it unknown.
    pub fn resolve(text: &str, dir: &str, server: &Server) -> Target {
        if let Some((scheme, host, path)) = split_url(text) {
            return match scheme.as_str() {
                "tftp" | "http" if server.is_this(host) => {
                    Target::relative(&percent_decode(path), "")
                }
                _ => Target::Elsewhere,
            };
        }
        Target::relative(text, dir)
    }

    /// `path` relative to `dir` (both under the root); a leading `/` is
    /// the root itself.
    pub fn relative(path: &str, dir: &str) -> Target {
        if path.contains('$') {
            return Target::Unknown;
        }
        let base = if path.starts_with(['/', '\\']) {
            ""
        } else {
            dir
        };
        let mut parts: Vec<&str> = Vec::new();
        for part in base.split('/').chain(path.split(['/', '\\'])) {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Target::Outside;
                    }
                }
                _ => parts.push(part),
            }
        }
        Target::Local(parts.join("/"))
    }
}

/// Decodes `%XX` escapes, as the HTTP server does before opening a file.
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory part of a path relative to the root (`""` for the root).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// The last component of a path.
pub fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

/// `dir/name`, or `name` in the root.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// The root, listed once.
#[derive(Debug)]
pub struct Tree<'a> {
    root: &'a Root,
    /// Regular files, relative to the root.
    files: Vec<String>,
    /// Directories, relative to the root.
    dirs: Vec<String>,
    pub server: Server,
}

impl<'a> Tree<'a> {
    pub fn scan(root: &'a Root, server: Server) -> Tree<'a> {
        let (files, dirs) = list(root);
        Tree {
            root,
            files,
            dirs,
            server,
        }
    }

    /// Regular files under the root, relative to it (symlinks to
    /// directories are not followed).
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(String::as_str)
    }

    /// The directories directly in `dir`, by name.
    pub fn subdirs<'s>(&'s self, dir: &'s str) -> impl Iterator<Item = &'s str> {
        self.dirs
            .iter()
            .filter(move |d| parent(d) == dir)
            .map(|d| file_name(d))
    }

    /// The files directly in `dir`, by name.
    pub fn files_in<'s>(&'s self, dir: &'s str) -> impl Iterator<Item = &'s str> {
        self.files
            .iter()
            .filter(move |f| parent(f) == dir)
            .map(|f| file_name(f))
    }

    pub fn is_dir(&self, path: &str) -> bool {
        path.is_empty() || self.dirs.iter().any(|d| d == path)
    }

    /// Whether the server would serve `path` (relative to the root).
    pub fn open(&self, path: &str) -> Result<(), ResolveError> {
        self.root.open_file(path.as_bytes()).map(drop)
    }

    pub fn exists(&self, path: &str) -> bool {
        self.open(path).is_ok()
    }

    /// Whether `target` is a file under the root the server would serve.
    pub fn exists_at(&self, target: &Target) -> bool {
        matches!(target, Target::Local(path) if self.exists(path))
    }

    /// The first [`MAX_CONFIG_BYTES`] of `path`, read through the root.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, ResolveError> {
        let (file, _) = self.root.open_file(path.as_bytes())?;
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|_| ResolveError::Refused)?;
        Ok(bytes)
    }

    /// Whether `path` begins with `magic` (read through the root).
    pub fn starts_with(&self, path: &str, magic: &[u8]) -> bool {
        let Ok((file, _)) = self.root.open_file(path.as_bytes()) else {
            return false;
        };
        let mut head = Vec::with_capacity(magic.len());
        file.take(magic.len() as u64).read_to_end(&mut head).is_ok()
            && head.eq_ignore_ascii_case(magic)
    }

    /// Reads a configuration file found in the listing; if it cannot be
    /// read, an error finding about it instead.
    pub fn read_config(&self, path: &str) -> Result<Vec<u8>, Finding> {
        self.read(path).map_err(|e| {
            Finding::about(
                Level::Error,
                path,
                format!("cannot be read ({e}); make it a regular, readable file under the root"),
            )
        })
    }

    /// Checks that the file `written` at `place`, which the loader reads as
    /// `target`, is served; an error finding saying how to fix it if not.
    pub fn check_file(
        &self,
        place: &Place<'_>,
        what: &str,
        written: &str,
        target: &Target,
    ) -> Option<Finding> {
        let path = match target {
            Target::Local(path) => path,
            Target::Elsewhere | Target::Unknown => return None,
            Target::Outside => {
                return Some(Finding::at(
                    Level::Error,
                    place,
                    format!(
                        "{what} {written} leads out of the root, which the server refuses; put the file under the root"
                    ),
                ));
            }
        };
        if path.is_empty() {
            return Some(Finding::at(
                Level::Error,
                place,
                format!("{what} {written} names the top of the root, not a file; correct the path"),
            ));
        }
        let shown = if written.trim_start_matches('/') == path {
            written.to_owned()
        } else {
            format!("{written} ({path})")
        };
        let message = match self.open(path) {
            Ok(()) => return None,
            Err(ResolveError::NotFound) => match self.suggest(written, path) {
                Some(near) => {
                    format!("{what} {shown} not found under the root (did you mean {near}?)")
                }
                None => format!(
                    "{what} {shown} not found under the root; copy it to {path} or correct the path"
                ),
            },
            Err(e) => format!(
                "{what} {shown} cannot be served ({e}); make it a regular, readable file under the root"
            ),
        };
        Some(Finding::at(Level::Error, place, message))
    }

    /// The closest existing file to the missing `path`, written the way
    /// the configuration wrote `written`: a sibling with a near name, or
    /// else any file with a near path (relative to the root).
    pub fn suggest(&self, written: &str, path: &str) -> Option<String> {
        let name = file_name(path);
        if let Some(near) = closest(name, self.files_in(parent(path))) {
            return Some(match written.strip_suffix(name) {
                Some(head) => format!("{head}{near}"),
                None => join(parent(path), near),
            });
        }
        closest(path, self.files()).map(str::to_owned)
    }
}

/// Files and directories under the root, relative to it, breadth first.
fn list(root: &Root) -> (Vec<String>, Vec<String>) {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let mut queue =
        std::collections::VecDeque::from([(root.path().to_path_buf(), String::new(), 0)]);
    while let Some((path, prefix, level)) = queue.pop_front() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            if files.len() + dirs.len() >= LIST_MAX {
                return (files, dirs);
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let rel = join(&prefix, &name);
            match entry.file_type() {
                Ok(t) if t.is_dir() => {
                    if level + 1 < LIST_DEPTH {
                        queue.push_back((entry.path(), rel.clone(), level + 1));
                    }
                    dirs.push(rel);
                }
                Ok(t) if t.is_file() || t.is_symlink() => files.push(rel),
                _ => {}
            }
        }
    }
    files.sort();
    dirs.sort();
    (files, dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listening_serves_the_host_addresses() {
        assert!(local_addresses().contains(&IpAddr::from([127, 0, 0, 1])));
    }

    #[test]
    fn resolves_like_a_loader() {
        let server = Server {
            addresses: vec!["10.0.0.5".parse().unwrap()],
        };
        let local = |p: &str| Target::Local(p.to_owned());
        assert_eq!(
            Target::resolve("vmlinuz", "boot", &server),
            local("boot/vmlinuz")
        );
        assert_eq!(
            Target::resolve("/vmlinuz", "boot", &server),
            local("vmlinuz")
        );
        assert_eq!(Target::resolve("../x/./y", "boot", &server), local("x/y"));
        assert_eq!(Target::resolve("../../y", "boot", &server), Target::Outside);
        assert_eq!(Target::resolve("$prefix/y", "", &server), Target::Unknown);
        assert_eq!(
            Target::resolve("http://10.0.0.5:8080/a%20b?x=1", "boot", &server),
            local("a b")
        );
        assert_eq!(
            Target::resolve("tftp://${next-server}/k", "boot", &server),
            local("k")
        );
        assert_eq!(
            Target::resolve("http://10.9.9.9/k", "", &server),
            Target::Elsewhere
        );
        assert_eq!(
            Target::resolve("https://10.0.0.5/k", "", &server),
            Target::Elsewhere
        );
    }
}

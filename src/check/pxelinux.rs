//! pxelinux (syslinux) configurations: [`parse`] reads one file's
//! directives (pure, for any bytes), [`check`] walks every configuration a
//! pxelinux loader under the root would read and reports each file it names
//! that the server cannot serve.
//!
//! pxelinux resolves paths against its working directory, the directory it
//! was loaded from (its path prefix): `vmlinuz` in the configuration of
//! `boot/pxelinux.0` is `boot/vmlinuz`, `/vmlinuz` and `::vmlinuz` are at
//! the top of the root, and `http://` and `tftp://` URLs (lpxelinux) are
//! files under the root when their host is this server. Its configuration
//! is `pxelinux.cfg/` beside it: a file per machine (`01-<mac>`, the IP
//! address in hex or a prefix of it, the UUID) or else `default`.

use super::Record;
use super::findings::{Finding, Findings, Level, Place};
use super::tree::{self, MAX_DEPTH, Server, Target, Tree};
use crate::suggest::closest;

/// The directory pxelinux reads its configuration from.
pub const CONFIG_DIR: &str = "pxelinux.cfg";

/// A directive that names a file (or, for `LABEL` and `DEFAULT`, a label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// `LABEL name`: the path is the label's name.
    Label,
    /// `DEFAULT`, `ONTIMEOUT`, `ONERROR`: a label, or a kernel.
    Default,
    /// `UI menu.c32`.
    Ui,
    /// `KERNEL` (and `BOOT`, `BSS`, `PXE`, `FDIMAGE`, `COMBOOT`): the type
    /// comes from the extension, `.c32` being a COM32 module.
    Kernel,
    /// `LINUX vmlinuz`.
    Linux,
    /// `COM32 chain.c32`.
    Com32,
    /// `INITRD` or each file of `APPEND initrd=a,b`.
    Initrd,
    /// `INCLUDE`, `MENU INCLUDE` and `CONFIG`: another configuration file.
    Include,
    /// `FDT` (or `DEVICETREE`).
    Fdt,
    /// Each directory of `PATH a:b`, where modules and libraries are
    /// looked for too.
    Path,
}

impl Directive {
    /// How findings name what the file is.
    pub fn noun(self) -> &'static str {
        match self {
            Directive::Label => "label",
            Directive::Default => "default",
            Directive::Ui => "UI module",
            Directive::Kernel => "kernel",
            Directive::Linux => "kernel",
            Directive::Com32 => "COM32 module",
            Directive::Initrd => "initrd",
            Directive::Include => "included file",
            Directive::Fdt => "device tree",
            Directive::Path => "PATH directory",
        }
    }
}

/// The directives of one configuration file that name files or labels, in
/// order. Keywords are case-insensitive; lines that name nothing are skipped.
pub fn parse(bytes: &[u8]) -> Vec<Record<Directive>> {
    let mut out = Vec::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let text = String::from_utf8_lossy(raw);
        let (keyword, mut rest) = split_word(&text);
        let mut keyword = keyword.to_ascii_lowercase();
        if keyword == "menu" {
            let (sub, after) = split_word(rest);
            if !sub.eq_ignore_ascii_case("include") {
                continue;
            }
            keyword = "include".into();
            rest = after;
        }
        let directive = match keyword.as_str() {
            "label" => Directive::Label,
            "default" | "ontimeout" | "onerror" => Directive::Default,
            "ui" => Directive::Ui,
            "kernel" | "boot" | "bss" | "pxe" | "fdimage" | "comboot" => Directive::Kernel,
            "linux" => Directive::Linux,
            "com32" => Directive::Com32,
            "include" | "config" => Directive::Include,
            "fdt" | "devicetree" => Directive::Fdt,
            "initrd" => {
                push_initrds(&mut out, line, rest.trim());
                continue;
            }
            "path" => {
                out.extend(
                    rest.split([':', ' ', '\t'])
                        .filter(|p| !p.is_empty())
                        .map(|p| Record {
                            line,
                            directive: Directive::Path,
                            path: p.to_owned(),
                        }),
                );
                continue;
            }
            "append" => {
                for arg in rest.split_whitespace() {
                    if let Some(list) = arg.strip_prefix("initrd=") {
                        push_initrds(&mut out, line, list);
                    }
                }
                continue;
            }
            _ => continue,
        };
        let (path, args) = split_word(rest);
        if path.is_empty() {
            continue;
        }
        out.push(Record {
            line,
            directive,
            path: path.to_owned(),
        });
        // `DEFAULT vmlinuz initrd=x` is a whole command line.
        if directive == Directive::Default {
            for arg in args.split_whitespace() {
                if let Some(list) = arg.strip_prefix("initrd=") {
                    push_initrds(&mut out, line, list);
                }
            }
        }
    }
    out
}

fn push_initrds(out: &mut Vec<Record<Directive>>, line: usize, list: &str) {
    out.extend(
        list.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| Record {
                line,
                directive: Directive::Initrd,
                path: p.to_owned(),
            }),
    );
}

/// The first word of `text` and what follows it, both trimmed at the start.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], text[i..].trim_start()),
        None => (text.trim_end(), ""),
    }
}

/// Where pxelinux, working in `dir`, reads `path` from: as
/// [`Target::resolve`], and `::path` (or `host::path` with this server as
/// host) is at the top of the root.
pub fn resolve(path: &str, dir: &str, server: &Server) -> Target {
    match path.split_once("::") {
        Some((host, rest)) if !path.contains("://") => {
            if host.is_empty() || server.is_this(host) {
                Target::relative(rest, "")
            } else {
                Target::Elsewhere
            }
        }
        _ => Target::resolve(path, dir, server),
    }
}

/// Whether `name` is a pxelinux loader: its directory is a working directory.
pub fn is_loader(name: &str) -> bool {
    let name = tree::file_name(name).to_ascii_lowercase();
    matches!(
        name.as_str(),
        "pxelinux.0"
            | "lpxelinux.0"
            | "gpxelinux.0"
            | "syslinux.efi"
            | "syslinux64.efi"
            | "syslinux32.efi"
    )
}

/// Whether the file `path` of `directive` is a COM32 module.
fn is_module(directive: Directive, path: &str) -> bool {
    match directive {
        Directive::Ui | Directive::Com32 => true,
        Directive::Kernel | Directive::Default => path.to_ascii_lowercase().ends_with(".c32"),
        _ => false,
    }
}

/// The libraries a COM32 module loads from beside it (syslinux 6).
fn libraries(module: &str) -> &'static [&'static str] {
    match module.to_ascii_lowercase().as_str() {
        "menu.c32" => &["libutil.c32"],
        "vesamenu.c32" => &["libutil.c32", "libcom32.c32"],
        "chain.c32" => &["libcom32.c32", "libutil.c32"],
        _ => &[],
    }
}

/// Whether a configuration file name is one pxelinux asks for by itself:
/// `default`, `01-<mac>`, an uppercase hex IP address or prefix, a UUID.
pub fn is_machine_config(name: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let mac = name.len() == 20
        && name.starts_with("01-")
        && name[3..].split('-').all(|p| p.len() == 2 && hex(p));
    let ip = (1..=8).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
    let uuid = name.len() == 36
        && name.split('-').map(str::len).eq([8, 4, 4, 4, 12])
        && name.split('-').all(hex);
    name == "default" || mac || ip || uuid
}

/// The per-machine name a file name that pxelinux never asks for was
/// meant to be: a MAC address without the `01-` (hardware type) prefix, or
/// with colons.
fn machine_config_meant(name: &str) -> Option<String> {
    let mac = name
        .strip_prefix("01-")
        .or_else(|| name.strip_prefix("01:"))
        .unwrap_or(name);
    let parts: Vec<&str> = mac.split(['-', ':']).collect();
    let is_mac = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    let meant = format!("01-{}", parts.join("-"));
    (is_mac && meant != name).then_some(meant)
}

/// Checks the configuration of each of `loaders` (paths relative to the root).
pub fn check(tree: &Tree<'_>, loaders: &[String], out: &mut Findings) {
    for loader in loaders {
        check_loader(tree, loader, out);
    }
}

fn check_loader(tree: &Tree<'_>, loader: &str, out: &mut Findings) {
    let dir = tree::parent(loader);
    let name = tree::file_name(loader);
    // The EFI builds load ldlinux.e64 (x64) or ldlinux.e32 (ia32).
    let efi = name.to_ascii_lowercase().ends_with(".efi");
    let ldlinux = if efi { "ldlinux.e64" } else { "ldlinux.c32" };
    let path = tree::join(dir, ldlinux);
    let found = tree.exists(&path) || (efi && tree.exists(&tree::join(dir, "ldlinux.e32")));
    if !found {
        out.push(Finding::about(
            Level::Error,
            &path,
            format!(
                "not found: {name} loads {ldlinux} from beside it before anything else; \
                 copy {ldlinux} there from the same syslinux version as {name}"
            ),
        ));
    }
    let Some(config_dir) = config_dir(tree, dir, name, out) else {
        return;
    };
    let configs: Vec<&str> = tree
        .files_in(&config_dir)
        .filter(|n| is_machine_config(n))
        .collect();
    for misnamed in tree.files_in(&config_dir) {
        if let Some(meant) = machine_config_meant(misnamed) {
            out.push(Finding::about(
                Level::Warning,
                tree::join(&config_dir, misnamed),
                format!("{name} never asks for this name, so no machine reads it (did you mean {meant}?); rename it"),
            ));
        }
    }
    if !configs.contains(&"default") {
        if configs.is_empty() {
            out.push(Finding::about(
                Level::Error,
                tree::join(&config_dir, "default"),
                format!(
                    "not found: {name} has no configuration and stops at a boot: prompt; create it"
                ),
            ));
        } else {
            out.push(Finding::about(
                Level::Warning,
                tree::join(&config_dir, "default"),
                format!(
                    "not found: only the machines with a configuration of their own ({}) boot, any other stops at a boot: prompt; create it if others should boot",
                    configs.join(", ")
                ),
            ));
        }
    }
    for config in configs {
        let mut walk = Walk {
            tree,
            dir,
            labels: Vec::new(),
            defaults: Vec::new(),
            modules: Vec::new(),
            search: Vec::new(),
            stack: Vec::new(),
        };
        walk.file(&tree::join(&config_dir, config), out);
        walk.finish(out);
    }
}

/// The configuration directory of the loader `name` in `dir`: its
/// `pxelinux.cfg`, or else a directory named like it, reported as
/// misspelt and checked as if it were named right.
fn config_dir(tree: &Tree<'_>, dir: &str, name: &str, out: &mut Findings) -> Option<String> {
    let config_dir = tree::join(dir, CONFIG_DIR);
    if tree.is_dir(&config_dir) {
        return Some(config_dir);
    }
    let Some(near) = closest(CONFIG_DIR, tree.subdirs(dir)) else {
        out.push(Finding::about(
            Level::Error,
            tree::join(&config_dir, "default"),
            format!(
                "not found: {name} has no configuration and stops at a boot: prompt; \
                 create {config_dir}/default"
            ),
        ));
        return None;
    };
    let misspelt = tree::join(dir, near);
    out.push(Finding::about(
        Level::Error,
        &misspelt,
        format!(
            "{name} reads its configuration from {CONFIG_DIR}/ and never from {near}/ \
             (did you mean {CONFIG_DIR}?); rename the directory to {config_dir}"
        ),
    ));
    Some(misspelt)
}

/// One machine's configuration, read with everything it includes.
struct Walk<'t, 'a> {
    tree: &'t Tree<'a>,
    /// The working directory: where the loader is.
    dir: &'t str,
    labels: Vec<String>,
    /// `DEFAULT`-like records (they may name labels defined later), by file.
    defaults: Vec<(String, Record<Directive>)>,
    /// COM32 modules named, found, with where they were named.
    modules: Vec<(String, usize, String)>,
    /// The directories of `PATH`, relative to the root.
    search: Vec<String>,
    /// The files being read, outermost first.
    stack: Vec<String>,
}

impl Walk<'_, '_> {
    fn file(&mut self, path: &str, out: &mut Findings) {
        let bytes = match self.tree.read_config(path) {
            Ok(bytes) => bytes,
            Err(finding) => return out.push(finding),
        };
        self.stack.push(path.to_owned());
        for record in parse(&bytes) {
            let place = Place {
                file: path,
                line: record.line,
            };
            let target = resolve(&record.path, self.dir, &self.tree.server);
            match record.directive {
                Directive::Label => self.labels.push(record.path),
                Directive::Default => self.defaults.push((path.to_owned(), record)),
                Directive::Include => self.include(&place, &record.path, &target, out),
                Directive::Path => {
                    if let Target::Local(dir) = target {
                        self.search.push(dir);
                    }
                }
                directive => {
                    let is_module = is_module(directive, &record.path);
                    let target = if is_module && !self.tree.exists_at(&target) {
                        self.on_path(&record.path).unwrap_or(target)
                    } else {
                        target
                    };
                    if let Some(finding) =
                        self.tree
                            .check_file(&place, directive.noun(), &record.path, &target)
                    {
                        out.push(finding);
                    } else if is_module {
                        self.note_module(&place, &target);
                    }
                }
            }
        }
        self.stack.pop();
    }

    fn include(&mut self, place: &Place<'_>, written: &str, target: &Target, out: &mut Findings) {
        if let Some(finding) = self
            .tree
            .check_file(place, "included file", written, target)
        {
            out.push(finding);
            return;
        }
        let Target::Local(path) = target else {
            return;
        };
        if self.stack.contains(path) {
            out.push(Finding::at(
                Level::Error,
                place,
                format!(
                    "include {written} includes itself again ({} -> {path}), which pxelinux follows until it runs out of memory; remove this include",
                    self.stack.join(" -> ")
                ),
            ));
        } else if self.stack.len() >= MAX_DEPTH {
            out.push(Finding::at(
                Level::Error,
                place,
                format!(
                    "include {written} nests more than {MAX_DEPTH} files deep; include fewer levels"
                ),
            ));
        } else {
            self.file(path, out);
        }
    }

    /// Remembers a found COM32 module, to check its libraries.
    fn note_module(&mut self, place: &Place<'_>, target: &Target) {
        if let Target::Local(path) = target {
            self.modules
                .push((place.file.to_owned(), place.line, path.clone()));
        }
    }

    /// A module or library named `written` (a relative name) found in one
    /// of the `PATH` directories.
    fn on_path(&self, written: &str) -> Option<Target> {
        if written.starts_with('/') || written.contains(':') {
            return None;
        }
        self.search
            .iter()
            .map(|dir| Target::relative(written, dir))
            .find(|t| self.tree.exists_at(t))
    }

    /// Checks what depends on the whole configuration: defaults naming
    /// labels defined anywhere, and the modules' libraries.
    fn finish(mut self, out: &mut Findings) {
        for (file, record) in std::mem::take(&mut self.defaults) {
            let place = Place {
                file: &file,
                line: record.line,
            };
            let name = &record.path;
            if self.labels.iter().any(|l| l.eq_ignore_ascii_case(name)) {
                continue;
            }
            let target = resolve(name, self.dir, &self.tree.server);
            let Target::Local(path) = &target else {
                continue;
            };
            if self.tree.exists(path) {
                self.note_module(&place, &target);
                continue;
            }
            if let Some(found) = self.on_path(name) {
                self.note_module(&place, &found);
                continue;
            }
            let hint = match closest(name, self.labels.iter().map(String::as_str)) {
                Some(near) => format!(" (did you mean label {near}?)"),
                None => match self.tree.suggest(name, path) {
                    Some(near) => format!(" (did you mean {near}?)"),
                    None => "; name one of its LABELs or a file under the root".into(),
                },
            };
            out.push(Finding::at(
                Level::Error,
                &place,
                format!("default {name} names neither a label of this configuration nor a file under the root{hint}"),
            ));
        }
        for (file, line, module) in &self.modules {
            let place = Place { file, line: *line };
            let dir = tree::parent(module);
            let name = tree::file_name(module);
            for lib in libraries(name) {
                let path = tree::join(dir, lib);
                if !self.tree.exists(&path) && self.on_path(lib).is_none() {
                    out.push(Finding::at(
                        Level::Error,
                        &place,
                        format!("{name} needs {lib} beside it and {path} is not found; copy {lib} there from the same syslinux version"),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<(usize, Directive, String)> {
        parse(text.as_bytes())
            .into_iter()
            .map(|r| (r.line, r.directive, r.path))
            .collect()
    }

    #[test]
    fn parses_directives_case_insensitively() {
        let text = "# comment\nDEFAULT menu.c32\nui vesamenu.c32 x\nmenu title Boot\n\
                    LABEL linux\n  MENU LABEL Linux\n  Kernel vmlinuz\n  APPEND quiet initrd=a.gz,b.gz root=/dev/x\n\
                    Menu Include common.cfg\ninclude other.cfg\nLINUX bzImage\nINITRD i1,i2\nCOM32 chain.c32\nFDT x.dtb\nPATH bios:/lib\n";
        use Directive::*;
        let s = |x: &str| x.to_owned();
        assert_eq!(
            records(text),
            vec![
                (2, Default, s("menu.c32")),
                (3, Ui, s("vesamenu.c32")),
                (5, Label, s("linux")),
                (7, Kernel, s("vmlinuz")),
                (8, Initrd, s("a.gz")),
                (8, Initrd, s("b.gz")),
                (9, Include, s("common.cfg")),
                (10, Include, s("other.cfg")),
                (11, Linux, s("bzImage")),
                (12, Initrd, s("i1")),
                (12, Initrd, s("i2")),
                (13, Com32, s("chain.c32")),
                (14, Fdt, s("x.dtb")),
                (15, Path, s("bios")),
                (15, Path, s("/lib")),
            ]
        );
    }

    #[test]
    fn survives_odd_bytes() {
        assert!(parse(b"\xff\xfeKERNEL \xff\r\n\0\0APPEND initrd=,,,\nMENU\nKERNEL\n").len() <= 1);
        assert_eq!(records("kernel vmlinuz\r\n")[0].2, "vmlinuz");
    }

    #[test]
    fn knows_the_names_pxelinux_asks_for() {
        for name in [
            "default",
            "01-52-54-00-12-34-56",
            "C0A8010A",
            "C0A8",
            "12345678-1234-1234-1234-123456789abc",
        ] {
            assert!(is_machine_config(name), "{name}");
        }
        for name in [
            "menu.cfg",
            "52-54-00-12-34-56",
            "c0a8010a",
            "01:52:54:00:12:34:56",
        ] {
            assert!(!is_machine_config(name), "{name}");
        }
        let meant = |n| machine_config_meant(n);
        assert_eq!(
            meant("52-54-00-12-34-56").as_deref(),
            Some("01-52-54-00-12-34-56")
        );
        assert_eq!(
            meant("01:52:54:00:12:34:56").as_deref(),
            Some("01-52-54-00-12-34-56")
        );
        assert_eq!(meant("01-52-54-00-12-34-56"), None);
        assert_eq!(meant("default"), None);
    }
}

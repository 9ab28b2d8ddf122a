//! GRUB configurations: [`parse`] reads one file's commands that load
//! files (pure, for any bytes), [`check`] walks every `grub.cfg` under the
//! root, with what it `configfile`s and `source`s, and reports each file the
//! server cannot serve.
//!
//! GRUB has no working directory: `/boot/vmlinuz` and `boot/vmlinuz` are
//! both at the top of the root (netbooted, `$root` is the TFTP server).
//! The device prefixes that name this server (`(tftp)`, `(pxe)`, `(http)`,
//! `($root)`, `(tftp,<this server>)`) are stripped; paths on other devices
//! (disks, other servers) are not checked, nor paths with a variable GRUB
//! fills in at boot (`$prefix/grub.cfg`).

use super::Record;
use super::findings::{Findings, Place};
use super::tree::{self, MAX_DEPTH, Server, Target, Tree};

/// A command that loads a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// `linux`, `linuxefi`, `linux16`.
    Linux,
    /// Each file of `initrd`, `initrdefi`, `initrd16`.
    Initrd,
    /// `chainloader`.
    Chainloader,
    /// `configfile`.
    Configfile,
    /// `source` (or `.`).
    Source,
}

impl Directive {
    /// How findings name what the file is.
    pub fn noun(self) -> &'static str {
        match self {
            Directive::Linux => "kernel",
            Directive::Initrd => "initrd",
            Directive::Chainloader => "chainloaded image",
            Directive::Configfile => "configfile",
            Directive::Source => "sourced file",
        }
    }
}

/// The commands of one configuration file that load files, in order: GRUB's
/// quoting, comments, `;` and blocks (`menuentry ... {`, `if ...; then`)
/// are understood well enough to find each command and its arguments.
pub fn parse(bytes: &[u8]) -> Vec<Record<Directive>> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for (line, words) in commands(&text) {
        let mut words = words
            .iter()
            .map(String::as_str)
            .skip_while(|w| matches!(*w, "then" | "else" | "do" | "!"));
        let directive = match words.next() {
            Some("linux" | "linuxefi" | "linux16") => Directive::Linux,
            Some("initrd" | "initrdefi" | "initrd16") => Directive::Initrd,
            Some("chainloader") => Directive::Chainloader,
            Some("configfile") => Directive::Configfile,
            Some("source" | ".") => Directive::Source,
            _ => continue,
        };
        let mut paths = words.filter(|w| !w.starts_with("--") && !w.is_empty());
        let take = if directive == Directive::Initrd {
            usize::MAX
        } else {
            1
        };
        for path in paths.by_ref().take(take) {
            out.push(Record {
                line,
                directive,
                path: path.to_owned(),
            });
        }
    }
    out
}

/// Splits a GRUB script into commands: each is the line it starts on and
/// its words, unquoted.
fn commands(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut start = 1;
    let mut line = 1;
    let mut chars = text.chars();
    let end_word = |word: &mut Option<String>, words: &mut Vec<String>| {
        if let Some(w) = word.take() {
            words.push(w);
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\n' | ';' | '{' | '}' | '|' | '&' => {
                end_word(&mut word, &mut words);
                if !words.is_empty() {
                    out.push((start, std::mem::take(&mut words)));
                }
                if c == '\n' {
                    line += 1;
                }
            }
            '#' if word.is_none() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        if !words.is_empty() {
                            out.push((start, std::mem::take(&mut words)));
                        }
                        line += 1;
                        break;
                    }
                }
            }
            c if c.is_whitespace() => end_word(&mut word, &mut words),
            _ => {
                if word.is_none() && words.is_empty() {
                    start = line;
                }
                let w = word.get_or_insert_with(String::new);
                match c {
                    '\'' => {
                        for c in chars.by_ref() {
                            if c == '\n' {
                                line += 1;
                            }
                            if c == '\'' {
                                break;
                            }
                            w.push(c);
                        }
                    }
                    '"' => {
                        while let Some(c) = chars.next() {
                            match c {
                                '"' => break,
                                '\\' => match chars.next() {
                                    Some('\n') => line += 1,
                                    Some(c @ ('"' | '\\' | '$')) => w.push(c),
                                    Some(c) => {
                                        w.push('\\');
                                        w.push(c);
                                    }
                                    None => break,
                                },
                                '\n' => {
                                    line += 1;
                                    w.push(c);
                                }
                                c => w.push(c),
                            }
                        }
                    }
                    '\\' => match chars.next() {
                        Some('\n') => line += 1,
                        Some(c) => w.push(c),
                        None => {}
                    },
                    c => w.push(c),
                }
            }
        }
    }
    end_word(&mut word, &mut words);
    if !words.is_empty() {
        out.push((start, words));
    }
    out
}

/// Where GRUB, netbooted from this server, reads `path` from.
pub fn resolve(path: &str, server: &Server) -> Target {
    let Some(rest) = path.strip_prefix('(') else {
        return Target::relative(path, "");
    };
    let Some((device, rest)) = rest.split_once(')') else {
        return Target::Unknown;
    };
    let (kind, host) = device.split_once(',').unwrap_or((device, ""));
    match kind {
        "$root" | "${root}" => {}
        _ if kind.contains('$') => return Target::Unknown,
        "tftp" | "pxe" | "http" if host.is_empty() || server.is_this(host) => {}
        _ => return Target::Elsewhere,
    }
    Target::relative(rest, "")
}

/// Whether `name` is a GRUB configuration GRUB reads by itself:
/// `grub.cfg`, or a per-machine `grub.cfg-01-<mac>`, `grub.cfg-<ip>`.
pub fn is_config(name: &str) -> bool {
    name == "grub.cfg" || name.starts_with("grub.cfg-")
}

/// Checks every GRUB configuration under the root.
pub fn check(tree: &Tree<'_>, out: &mut Findings) {
    let configs: Vec<&str> = tree
        .files()
        .filter(|f| is_config(tree::file_name(f)))
        .collect();
    let mut seen = Vec::new();
    for config in configs {
        walk(tree, config, &mut seen, out);
    }
}

/// Checks `path` and what it reads in turn; each file once (a menu that
/// `configfile`s its own file to go back is fine, not a loop).
fn walk(tree: &Tree<'_>, path: &str, seen: &mut Vec<String>, out: &mut Findings) {
    if seen.iter().any(|s| s == path) || seen.len() >= MAX_DEPTH * MAX_DEPTH {
        return;
    }
    seen.push(path.to_owned());
    let bytes = match tree.read_config(path) {
        Ok(bytes) => bytes,
        Err(finding) => return out.push(finding),
    };
    for record in parse(&bytes) {
        let place = Place {
            file: path,
            line: record.line,
        };
        let target = resolve(&record.path, &tree.server);
        if let Some(finding) =
            tree.check_file(&place, record.directive.noun(), &record.path, &target)
        {
            out.push(finding);
        } else if let (Directive::Configfile | Directive::Source, Target::Local(next)) =
            (record.directive, &target)
        {
            walk(tree, next, seen, out);
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
    fn finds_commands_in_blocks_and_quotes() {
        let text = "set timeout=5 # linux /not-this\n\
                    menuentry 'Install \"x\"; linux /no' --class os {\n\
                    \tlinux /casper/vmlinuz boot=casper 'quiet splash' ---\n\
                    \tinitrd /casper/initrd.gz \"/extra one.img\"\n\
                    }\n\
                    if [ -f x ]; then source (tftp)/extra.cfg; fi\n\
                    menuentry 'EFI' { chainloader --force ($root)/efi/x.efi; }\n\
                    configfile \\\n  $prefix/menu.cfg\n";
        use Directive::*;
        let s = |x: &str| x.to_owned();
        assert_eq!(
            records(text),
            vec![
                (3, Linux, s("/casper/vmlinuz")),
                (4, Initrd, s("/casper/initrd.gz")),
                (4, Initrd, s("/extra one.img")),
                (6, Source, s("(tftp)/extra.cfg")),
                (7, Chainloader, s("($root)/efi/x.efi")),
                (8, Configfile, s("$prefix/menu.cfg")),
            ]
        );
    }

    #[test]
    fn resolves_devices() {
        let server = Server::default();
        let local = |p: &str| Target::Local(p.to_owned());
        assert_eq!(resolve("/boot/vmlinuz", &server), local("boot/vmlinuz"));
        assert_eq!(
            resolve("(tftp)/boot/vmlinuz", &server),
            local("boot/vmlinuz")
        );
        assert_eq!(resolve("($root)/x", &server), local("x"));
        assert_eq!(
            resolve("(tftp,${net_default_server})/x", &server),
            local("x")
        );
        assert_eq!(resolve("(hd0,gpt1)/x", &server), Target::Elsewhere);
        assert_eq!(resolve("(tftp,10.9.9.9)/x", &server), Target::Elsewhere);
        assert_eq!(resolve("$prefix/grub.cfg", &server), Target::Unknown);
        assert_eq!(resolve("($cmdpath)/x", &server), Target::Unknown);
    }

    #[test]
    fn survives_odd_bytes() {
        parse(b"linux '\nunterminated \"\\");
        parse(b"\xff\\\xfe{}{;;\n#\xff");
    }
}

//! iPXE scripts: [`parse`] reads one script's commands that fetch files
//! (pure, for any bytes), [`check`] walks every script under the root (and
//! the configured `ipxe_script`, and the scripts they chain to) and reports
//! each file the server cannot serve.
//!
//! iPXE resolves a relative path against the script's own URI, so
//! `vmlinuz` in `boot/menu.ipxe` is `boot/vmlinuz` and `/vmlinuz` is at the
//! top of the root. `tftp://` and `http://` URLs are files under the root
//! when their host is this server or a variable (`${next-server}`); other
//! hosts, and paths with variables, are not checked.

use super::Record;
use super::findings::{Findings, Place};
use super::tree::{self, MAX_DEPTH, Target, Tree};

/// A command that fetches a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// `kernel` (or `imgload`, `imgselect`).
    Kernel,
    /// `initrd`.
    Initrd,
    /// `chain` (or `chainload`).
    Chain,
    /// `imgfetch`.
    Imgfetch,
    /// `module`.
    Module,
}

impl Directive {
    /// How findings name what the file is.
    pub fn noun(self) -> &'static str {
        match self {
            Directive::Kernel => "kernel",
            Directive::Initrd => "initrd",
            Directive::Chain => "chained image",
            Directive::Imgfetch => "image",
            Directive::Module => "module",
        }
    }
}

/// Longest value a `set` variable may take (expansion can double it).
const MAX_VALUE_LEN: usize = 4096;

/// The commands of one script that fetch files, in order. Each line may
/// hold several commands joined by `||` or `&&`; options (`--name x`,
/// `--autofree`) come before the URI, arguments after it. Variables the
/// script `set`s on an earlier line (`set base-url http://...`) are
/// expanded; any other `${...}` stays as written.
pub fn parse(bytes: &[u8]) -> Vec<Record<Directive>> {
    let mut out = Vec::new();
    let mut vars: Vec<(String, String)> = Vec::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        if text.starts_with(['#', ':']) {
            continue;
        }
        let mut words = text.split_whitespace().peekable();
        while words.peek().is_some() {
            let command: Vec<&str> = words
                .by_ref()
                .take_while(|w| !matches!(*w, "||" | "&&"))
                .collect();
            let Some((&name, args)) = command.split_first() else {
                continue;
            };
            let directive = match name {
                "kernel" | "imgload" | "imgselect" => Directive::Kernel,
                "initrd" => Directive::Initrd,
                "chain" | "chainload" => Directive::Chain,
                "imgfetch" => Directive::Imgfetch,
                "module" => Directive::Module,
                "set" | "clear" => {
                    if let Some((&var, value)) = args.split_first() {
                        let value = expand(&value.join(" "), &vars);
                        vars.retain(|(n, _)| n != var);
                        if name == "set" && !value.is_empty() && value.len() <= MAX_VALUE_LEN {
                            vars.push((var.to_owned(), value));
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            if let Some(path) = image_uri(args) {
                out.push(Record {
                    line: index + 1,
                    directive,
                    path: expand(path, &vars),
                });
            }
        }
    }
    out
}

/// The URI among an image command's words: the first after the options.
fn image_uri<'a>(args: &[&'a str]) -> Option<&'a str> {
    let mut args = args.iter();
    while let Some(&arg) = args.next() {
        match arg {
            "--name" | "-n" | "--timeout" | "-t" => {
                args.next();
            }
            _ if arg.starts_with('-') => {}
            _ => return Some(arg),
        }
    }
    None
}

/// `text` with each `${name}` of `vars` replaced by its value.
fn expand(text: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            rest = &rest[start..];
            break;
        };
        match vars.iter().find(|(n, _)| n == &after[..end]) {
            Some((_, value)) => out.push_str(value),
            None => out.push_str(&rest[start..start + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether `bytes` begin like an iPXE script.
pub fn is_script(bytes: &[u8]) -> bool {
    bytes.len() >= 6 && bytes[..6].eq_ignore_ascii_case(b"#!ipxe")
}

/// Checks every `*.ipxe` file under the root and `script` (the configured
/// `ipxe_script`, a name or a URL).
pub fn check(tree: &Tree<'_>, script: Option<&str>, out: &mut Findings) {
    let mut scripts: Vec<String> = tree
        .files()
        .filter(|f| f.to_ascii_lowercase().ends_with(".ipxe"))
        .map(str::to_owned)
        .collect();
    if let Some(Target::Local(path)) = script.map(|s| Target::resolve(s, "", &tree.server)) {
        scripts.insert(0, path);
    }
    let mut seen = Vec::new();
    for script in &scripts {
        walk(tree, script, &mut seen, 0, out);
    }
}

/// Checks `path` and the scripts it chains to, each once.
fn walk(tree: &Tree<'_>, path: &str, seen: &mut Vec<String>, depth: usize, out: &mut Findings) {
    if depth > MAX_DEPTH || seen.iter().any(|s| s == path) {
        return;
    }
    seen.push(path.to_owned());
    let bytes = match tree.read_config(path) {
        Ok(bytes) => bytes,
        Err(finding) => return out.push(finding),
    };
    if !is_script(&bytes) {
        return;
    }
    let dir = tree::parent(path);
    for record in parse(&bytes) {
        let place = Place {
            file: path,
            line: record.line,
        };
        let target = Target::resolve(&record.path, dir, &tree.server);
        if let Some(finding) =
            tree.check_file(&place, record.directive.noun(), &record.path, &target)
        {
            out.push(finding);
        } else if let (Directive::Chain, Target::Local(next)) = (record.directive, &target)
            && tree.starts_with(next, b"#!ipxe")
        {
            walk(tree, next, seen, depth + 1, out);
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
    fn finds_fetches_with_options() {
        let text = "#!ipxe\ndhcp || goto failed\n:menu\n\
                    kernel --name k --timeout 5000 http://${next-server}/vmlinuz quiet initrd=initrd.img\n\
                    initrd -n initrd.img initrd.img && imgfetch --autofree extra.cpio\n\
                    module m.cpio\nchain boot.ipxe || goto menu\n# chain no.ipxe\n";
        use Directive::*;
        let s = |x: &str| x.to_owned();
        assert_eq!(
            records(text),
            vec![
                (4, Kernel, s("http://${next-server}/vmlinuz")),
                (5, Initrd, s("initrd.img")),
                (5, Imgfetch, s("extra.cpio")),
                (6, Module, s("m.cpio")),
                (7, Chain, s("boot.ipxe")),
            ]
        );
    }

    #[test]
    fn expands_what_the_script_sets() {
        let text = "set base-url http://${next-server}/ubuntu\nset x ${base-url}/${arch}\n\
                    kernel ${base-url}/vmlinuz\ninitrd ${x}/initrd\nclear base-url\nimgfetch ${base-url}/m\n";
        let paths: Vec<String> = records(text).into_iter().map(|r| r.2).collect();
        assert_eq!(
            paths,
            [
                "http://${next-server}/ubuntu/vmlinuz",
                "http://${next-server}/ubuntu/${arch}/initrd",
                "${base-url}/m",
            ]
        );
        // Doubling on every line stays bounded.
        let bomb = "set a xx\n".to_owned() + &"set a ${a}${a}\n".repeat(64) + "kernel ${a}\n";
        assert!(records(&bomb)[0].2.len() <= 2 * MAX_VALUE_LEN);
    }

    #[test]
    fn survives_odd_bytes() {
        assert!(parse(b"kernel --name\n\xff chain\nchain -- \xfe\n||&&\n").len() <= 1);
        assert!(is_script(b"#!iPXE\n"));
        assert!(!is_script(b"#!ip"));
    }
}

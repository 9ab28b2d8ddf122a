//! The two forms a hosts file may take (TOML like a `[[mac]]` entry, or
//! dnsmasq's `dhcp-host` lines), told apart by content, read into rules
//! with file:line for every error.

use std::path::Path;

use serde::Deserialize;

use super::{HostAction, HostRule};
use crate::dhcp::MacPattern;
use crate::dnsmasq_conf::parse_fields;
use crate::wire::dhcp::MAX_OPTION_LEN;

/// Parses one host file, in whichever form its content is written.
pub fn parse(bytes: &[u8], origin: &Path) -> Result<Vec<HostRule>, Vec<String>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        vec![format!(
            "{}:{line}: not valid UTF-8; save the file as UTF-8",
            origin.display()
        )]
    })?;
    if is_toml(text) {
        parse_toml(text, origin).map_err(|e| vec![e])
    } else {
        parse_dnsmasq(text, origin)
    }
}

/// rackboot's form starts (after comments) with a `[[mac]]` table or a
/// `key =` line; dnsmasq's with a MAC (or `dhcp-host=`).
pub(super) fn is_toml(text: &str) -> bool {
    let Some(first) = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
    else {
        return false;
    };
    if first.starts_with('[') {
        return true;
    }
    let key_len = first
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
        .count();
    let (key, rest) = first.split_at(key_len);
    key_len > 0 && key != "dhcp-host" && rest.trim_start().starts_with('=')
}

/// One machine as rackboot writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(alias = "prefix")]
    mac: toml::Spanned<MacPattern>,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    ignore: bool,
}

/// Several machines: `[[mac]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entries {
    mac: Vec<Entry>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn parse_toml(text: &str, origin: &Path) -> Result<Vec<HostRule>, String> {
    let place = |offset: usize| format!("{}:{}", origin.display(), line_of(text, offset));
    let toml_error = |e: toml::de::Error| {
        let at = match e.span() {
            Some(span) => place(span.start),
            None => origin.display().to_string(),
        };
        let hint = if e.message().contains("unknown field") {
            " (a host file's keys: mac, file, ignore)"
        } else {
            ""
        };
        format!("{at}: {}{hint}", e.message().trim())
    };
    let table: toml::Table = toml::from_str(text).map_err(toml_error)?;
    let entries = if table.get("mac").is_some_and(|m| m.is_array()) {
        toml::from_str::<Entries>(text).map_err(toml_error)?.mac
    } else {
        vec![toml::from_str::<Entry>(text).map_err(toml_error)?]
    };
    entries
        .into_iter()
        .map(|entry| {
            let at = place(entry.mac.span().start);
            let mac = *entry.mac.get_ref();
            let action = match (entry.file, entry.ignore) {
                (Some(_), true) => {
                    return Err(format!(
                        "{at}: {mac} has both a file and ignore = true; keep one of them"
                    ));
                }
                (Some(file), false) => {
                    check_file(&file).map_err(|why| format!("{at}: {mac}: {why}"))?;
                    HostAction::Boot(file)
                }
                (None, true) => HostAction::Ignore,
                (None, false) => {
                    return Err(format!(
                        "{at}: {mac} needs file = \"...\" (its boot file) or ignore = true (never answer it)"
                    ));
                }
            };
            Ok(HostRule {
                mac,
                action,
                place: at,
            })
        })
        .collect()
}

fn check_file(file: &str) -> Result<(), String> {
    if file.is_empty() {
        return Err("file is empty; name the boot file, e.g. file = \"pxelinux.0\"".into());
    }
    if file.len() > MAX_OPTION_LEN {
        return Err(format!(
            "file is {} bytes long; at most {MAX_OPTION_LEN} fit in a DHCP option",
            file.len()
        ));
    }
    Ok(())
}

/// dnsmasq's `dhcp-host` lines (without or with the `dhcp-host=`).
fn parse_dnsmasq(text: &str, origin: &Path) -> Result<Vec<HostRule>, Vec<String>> {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let at = format!("{}:{}", origin.display(), index + 1);
        match dnsmasq_line(line) {
            Ok(found) => rules.extend(found.into_iter().map(|(mac, action)| HostRule {
                mac,
                action,
                place: at.clone(),
            })),
            Err(why) => errors.push(format!("{at}: {why}")),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// The machines of one `dhcp-host` line and what it says of them.
fn dnsmasq_line(line: &str) -> Result<Vec<(MacPattern, HostAction)>, String> {
    let Some(mut fields) = parse_fields(line)? else {
        return Ok(Vec::new());
    };
    // `dhcp-host=MAC,...` as in a dnsmasq.conf: the first field holds the `=`.
    if let Some((key, first)) = fields[0].split_once('=') {
        let key = key.trim();
        if !key.eq_ignore_ascii_case("dhcp-host") {
            return Err(format!(
                "`{key}=` does not belong in a hosts directory; write dhcp-host lines \
                 (MAC[,set:TAG][,ignore]) or rackboot's mac = \"...\" form"
            ));
        }
        fields[0] = first.trim().to_owned();
    }
    let mut macs = Vec::new();
    let mut ignore = false;
    let mut client_id = false;
    for field in &fields {
        let lower = field.to_ascii_lowercase();
        if lower == "ignore" {
            ignore = true;
        } else if lower.starts_with("id:") {
            client_id = true;
        } else if ["set:", "net:", "tag:"]
            .iter()
            .any(|p| lower.starts_with(p))
        {
            // Tags: the machine is known; rackboot has no tag rules.
        } else if field.contains(':') && !field.starts_with('[') {
            let mac: MacPattern = field.parse().map_err(|_| {
                format!(
                    "`{field}` is not a MAC address; write it as 52:54:00:12:34:56 \
                     (trailing * octets for a range: 52:54:00:*:*:*)"
                )
            })?;
            macs.push(mac);
        }
        // Anything else is an address, a name or a lease time: the DHCP
        // server's business, passed over.
    }
    if macs.is_empty() {
        return Err(if client_id {
            "matches a client identifier (id:), and rackboot picks machines by MAC; \
             write the MAC instead, e.g. 52:54:00:12:34:56,ignore"
                .to_owned()
        } else {
            "names no MAC address; write MAC[,set:TAG][,ignore], e.g. 52:54:00:12:34:56,ignore"
                .to_owned()
        });
    }
    let action = if ignore {
        HostAction::Ignore
    } else {
        HostAction::Known
    };
    Ok(macs.into_iter().map(|mac| (mac, action.clone())).collect())
}

// ---------------------------------------------------------------------------
// Watching
// ---------------------------------------------------------------------------

//! Per-client file names: ordered remap rules (as tftpd-hpa's
//! `--map-file`) and per-client roots (as dnsmasq's `tftp-unique-root`),
//! applied to a requested name before it is resolved under the root. They
//! only rewrite the name: the result goes through the same normalisation
//! and `openat2(RESOLVE_BENEATH)` as any request, so no rule can lead
//! outside the root.
//!
//! A rule's `match` is a regular expression (the `regex` crate's syntax)
//! over the requested name; its `replace` template may use the groups
//! (`$1`, `${name}`) and the client's address and hardware address,
//! `${ip}` and `${mac}` (`01-23-45-67-89-ab`, as dnsmasq writes it; empty
//! when the address is not in the neighbour table). Rules apply in order,
//! each to the result of the one before; a rule with `last = true` that
//! matches ends the list.

use std::net::IpAddr;

use regex::bytes::Regex;
use serde::Deserialize;

/// One `[[remap]]` table of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemapRule {
    #[serde(rename = "match")]
    pub pattern: String,
    pub replace: String,
    #[serde(default)]
    pub last: bool,
}

/// Which per-client directory is tried first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UniqueRoot {
    /// `ROOT/<client address>/` (dotted quad, or IPv6 text).
    Ip,
    /// `ROOT/<client MAC>/`, `01-23-45-67-89-ab`.
    Mac,
}

/// Longest name a rule may produce (longer results are refused).
const MAX_REMAPPED: usize = 4096;

/// A rule made a name longer than [`MAX_REMAPPED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// The compiled rules and the per-client root setting.
#[derive(Debug, Clone, Default)]
pub struct Naming {
    rules: Vec<(Regex, Vec<u8>, bool)>,
    unique_root: Option<UniqueRoot>,
    /// Whether any template or the root needs the client's MAC.
    wants_mac: bool,
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub ip: IpAddr,
    pub mac: Option<[u8; 6]>,
}

impl Naming {
    /// Compiles `rules`; an error gives the rule's index and names it
    /// (1-based) with the fault.
    pub fn new(
        rules: &[RemapRule],
        unique_root: Option<UniqueRoot>,
    ) -> Result<Naming, (usize, String)> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let regex = regex::bytes::RegexBuilder::new(&rule.pattern)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| {
                    let e = e.to_string().replace('\n', " ");
                    (
                        i,
                        format!("remap rule {}: match {:?}: {e}", i + 1, rule.pattern),
                    )
                })?;
            compiled.push((regex, rule.replace.clone().into_bytes(), rule.last));
        }
        let wants_mac = unique_root == Some(UniqueRoot::Mac)
            || rules.iter().any(|r| r.replace.contains("${mac}"));
        Ok(Naming {
            rules: compiled,
            unique_root,
            wants_mac,
        })
    }

    /// Whether names are rewritten at all (if not, callers skip the work).
    pub fn is_identity(&self) -> bool {
        self.rules.is_empty() && self.unique_root.is_none()
    }

    /// Whether [`Client::mac`] is needed.
    pub fn wants_mac(&self) -> bool {
        self.wants_mac
    }

    /// The name after the remap rules.
    pub fn remap(&self, requested: &[u8], client: &Client) -> Result<Vec<u8>, TooLong> {
        let mut name = requested.to_vec();
        for (regex, template, last) in &self.rules {
            let Some(caps) = regex.captures(&name) else {
                continue;
            };
            let template = with_client(template, client);
            let mut out = Vec::with_capacity(name.len() + template.len());
            let whole = caps.get(0).map_or(0..0, |m| m.range());
            out.extend_from_slice(&name[..whole.start]);
            caps.expand(&template, &mut out);
            out.extend_from_slice(&name[whole.end..]);
            if out.len() > MAX_REMAPPED {
                return Err(TooLong);
            }
            name = out;
            if *last {
                break;
            }
        }
        Ok(name)
    }

    /// The per-client directory to try first, if configured and known.
    pub fn client_dir(&self, client: &Client) -> Option<String> {
        match self.unique_root? {
            UniqueRoot::Ip => Some(client.ip.to_string()),
            UniqueRoot::Mac => client.mac.map(|m| mac_text(&m)),
        }
    }
}

/// The template with `${ip}` and `${mac}` replaced by the client's
/// (escaped for `expand`, which reads `$` itself).
fn with_client(template: &[u8], client: &Client) -> Vec<u8> {
    let ip = client.ip.to_string();
    let mac = client.mac.map(|m| mac_text(&m)).unwrap_or_default();
    let mut out = Vec::with_capacity(template.len() + 32);
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(b"${ip}") {
            out.extend_from_slice(ip.as_bytes());
            rest = after;
        } else if let Some(after) = rest.strip_prefix(b"${mac}") {
            out.extend_from_slice(mac.as_bytes());
            rest = after;
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

/// `01-23-45-67-89-ab`, as dnsmasq names per-MAC roots.
pub fn mac_text(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}-{b:02x}-{c:02x}-{d:02x}-{e:02x}-{f:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, replace: &str, last: bool) -> RemapRule {
        RemapRule {
            pattern: pattern.into(),
            replace: replace.into(),
            last,
        }
    }

    const CLIENT: Client = Client {
        ip: IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7)),
        mac: Some([0x52, 0x54, 0x00, 0xab, 0x00, 0x01]),
    };

    #[test]
    fn rules_apply_in_order_and_last_stops() {
        let naming = Naming::new(
            &[
                rule(r"^pxelinux\.cfg/(.*)$", "cfg/${ip}/$1", false),
                rule(r"^cfg/", "configs/", true),
                rule(r"^configs/", "never/", false),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            naming.remap(b"pxelinux.cfg/default", &CLIENT).unwrap(),
            b"configs/10.0.0.7/default"
        );
        assert_eq!(naming.remap(b"other", &CLIENT).unwrap(), b"other");
    }

    #[test]
    fn mac_and_unique_roots() {
        let naming = Naming::new(
            &[rule("^boot$", "${mac}/boot.ipxe", false)],
            Some(UniqueRoot::Mac),
        )
        .unwrap();
        assert!(naming.wants_mac());
        assert_eq!(
            naming.remap(b"boot", &CLIENT).unwrap(),
            b"52-54-00-ab-00-01/boot.ipxe"
        );
        assert_eq!(
            naming.client_dir(&CLIENT).as_deref(),
            Some("52-54-00-ab-00-01")
        );
        let by_ip = Naming::new(&[], Some(UniqueRoot::Ip)).unwrap();
        assert_eq!(by_ip.client_dir(&CLIENT).as_deref(), Some("10.0.0.7"));
        let unknown = Client {
            mac: None,
            ..CLIENT
        };
        assert_eq!(naming.client_dir(&unknown), None);
    }

    #[test]
    fn a_bad_rule_is_named() {
        let (index, err) =
            Naming::new(&[rule("ok", "x", false), rule("(", "x", false)], None).unwrap_err();
        assert_eq!(index, 1);
        assert!(err.starts_with("remap rule 2: match \"(\""), "{err}");
    }

    #[test]
    fn results_are_bounded() {
        let rules = vec![rule("^(.*)$", "$1$1$1$1$1$1$1$1", false); 4];
        let naming = Naming::new(&rules, None).unwrap();
        assert!(naming.remap(&[b'a'; 100], &CLIENT).is_err());
    }
}

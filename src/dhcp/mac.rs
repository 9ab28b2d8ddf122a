//! MAC addresses and MAC prefixes, as written in the configuration, matched
//! against a request's `chaddr`.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer};

/// A whole MAC address (6 octets) or a prefix of one (1 to 5 octets, e.g. an
/// OUI `52:54:00`). Written with `:` or `-` separators; trailing `*` octets
/// (`52:54:00:*:*:*`, dnsmasq's wildcard form) also make a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacPattern {
    octets: [u8; 6],
    len: u8,
}

impl MacPattern {
    /// Matches exactly this address.
    pub const fn exact(octets: [u8; 6]) -> Self {
        MacPattern { octets, len: 6 }
    }

    /// Matches every address that begins with `prefix`; `None` when it is
    /// empty or longer than 6 octets.
    pub fn prefix(prefix: &[u8]) -> Option<Self> {
        let mut octets = [0; 6];
        octets
            .get_mut(..prefix.len())
            .filter(|_| !prefix.is_empty())?
            .copy_from_slice(prefix);
        Some(MacPattern {
            octets,
            len: u8::try_from(prefix.len()).ok()?,
        })
    }

    /// The octets this pattern compares.
    pub fn octets(&self) -> &[u8] {
        &self.octets[..usize::from(self.len)]
    }

    /// How many octets it compares: the more, the more specific.
    pub fn octet_count(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_exact(&self) -> bool {
        self.len == 6
    }

    /// Whether a 6-byte hardware address matches. Other lengths (hlen != 6,
    /// e.g. InfiniBand) never match.
    pub fn matches(&self, hardware_address: &[u8]) -> bool {
        hardware_address.len() == 6 && hardware_address.starts_with(self.octets())
    }
}

impl fmt::Display for MacPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, octet) in self.octets().iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{octet:02x}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad MAC address or prefix {0:?} (expected e.g. 52:54:00:12:34:56 or 52:54:00)")]
pub struct BadMac(pub String);

impl FromStr for MacPattern {
    type Err = BadMac;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadMac(s.to_owned());
        let mut octets = [0u8; 6];
        let mut len = 0;
        let mut wildcards = 0;
        for part in s.trim().split([':', '-']) {
            if part == "*" {
                wildcards += 1;
                continue;
            }
            let is_octet =
                (1..=2).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit());
            // A concrete octet after a wildcard would not make a prefix.
            if !is_octet || wildcards > 0 || len == octets.len() {
                return Err(bad());
            }
            octets[len] = u8::from_str_radix(part, 16).map_err(|_| bad())?;
            len += 1;
        }
        if len + wildcards > octets.len() {
            return Err(bad());
        }
        MacPattern::prefix(&octets[..len]).ok_or_else(bad)
    }
}

impl<'de> serde::Deserialize<'de> for MacPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_prefixes() {
        let mac: MacPattern = "52:54:00:12:34:56".parse().unwrap();
        assert!(mac.is_exact());
        assert_eq!(mac.to_string(), "52:54:00:12:34:56");
        assert_eq!("52-54-00-12-34-56".parse::<MacPattern>(), Ok(mac));

        let oui: MacPattern = "52:54:00".parse().unwrap();
        assert_eq!(oui.octet_count(), 3);
        assert_eq!("52:54:00:*:*:*".parse::<MacPattern>(), Ok(oui));

        for bad in [
            "",
            "52:54:00:12:34:56:78",
            "5254",
            "zz",
            "52::00",
            "52:*:00",
            "*",
        ] {
            assert!(bad.parse::<MacPattern>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matches_only_six_byte_addresses() {
        let oui: MacPattern = "52:54:00".parse().unwrap();
        assert!(oui.matches(&[0x52, 0x54, 0, 1, 2, 3]));
        assert!(!oui.matches(&[0x52, 0x55, 0, 1, 2, 3]));
        assert!(!oui.matches(&[0x52, 0x54, 0]));
        assert!(!oui.matches(&[0x52, 0x54, 0, 1, 2, 3, 4, 5]));
    }
}

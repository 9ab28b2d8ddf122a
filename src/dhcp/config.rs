//! What the proxy policy is told to do. The shapes follow the TOML file:
//!
//! ```toml
//! [proxy]
//! vendor_classes = ["PXEClient", "HW-Client"]
//! reply_delay_ms = 0
//! tftp_server = "10.0.0.5"          # default: the receiving interface's address
//! prompt = { timeout = 5, text = "Press F8 for the boot menu" }
//! local_boot_menu = "Boot from local disk"
//! ipxe_script = "http://10.0.0.5/boot.ipxe"
//! ignore_macs = ["52:54:00:aa:bb:cc", "00:1b:21"]
//!
//! [[boot]]
//! arch = "bios"                     # or an option 93 number
//! file = "undionly.kpxe"
//! menu = "Install Linux"
//!
//! [[boot]]
//! arch = "x64-uefi"
//! file = "ipxe.efi"
//! http_url = "http://10.0.0.5/ipxe.efi"   # for x64 UEFI HTTP boot clients
//!
//! [[mac]]
//! mac = "52:54:00:12:34:56"         # or prefix = "52:54:00"
//! file = "special.efi"
//! ```
//!
//! A loader embeds [`ProxyConfig`] (with `#[serde(flatten)]`) or fills it in
//! code; [`crate::dhcp::proxy::Policy::new`] validates it.

use std::net::Ipv4Addr;

use serde::Deserialize;

use super::arch::Arch;
use super::mac::MacPattern;

/// Vendor class prefix of standard PXE clients.
pub const PXE_CLIENT: &str = "PXEClient";
/// Menu text of the local boot item (type 0) unless configured.
pub const DEFAULT_LOCAL_BOOT_MENU: &str = "Boot from local disk";

/// Everything the proxy policy reads: `[proxy]`, `[[boot]]` and `[[mac]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProxyConfig {
    pub proxy: ProxySettings,
    /// Boot entries in order: for BIOS they make the menu (the first one is
    /// picked when no prompt is configured); for the other architectures
    /// the first matching entry is used.
    pub boot: Vec<BootEntry>,
    /// Per-machine boot files.
    pub mac: Vec<MacOverride>,
}

/// The `[proxy]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxySettings {
    /// Option 60 prefixes that mark a PXE client (`PXEClient`; Huawei
    /// firmware sends `HW-Client`). The matched one is echoed in the reply.
    pub vendor_classes: Vec<String>,
    /// Wait this long before sending an offer on port 67, so that another
    /// PXE server on the segment wins (0: answer at once).
    pub reply_delay_ms: u64,
    /// The TFTP server named in siaddr; default: the address of the
    /// interface the request came in on.
    pub tftp_server: Option<Ipv4Addr>,
    /// BIOS menu prompt; without one a `PXE` prompt with timeout 0 is sent,
    /// which boots the first menu item at once (as dnsmasq does).
    pub prompt: Option<Prompt>,
    /// Text of the BIOS menu item 0, "boot from local disk", listed after
    /// the boot entries; `None` leaves it out of the menu.
    pub local_boot_menu: Option<String>,
    /// What iPXE gets instead of a boot file, so chainloading never loops:
    /// a URL (`http://host/boot.ipxe`) or a TFTP file name (`boot.ipxe`).
    pub ipxe_script: Option<String>,
    /// Machines never answered.
    pub ignore_macs: Vec<MacPattern>,
    /// Answer Raspberry Pi network boot ROMs (arch 0 from the Raspberry Pi
    /// MAC prefixes) with the option 43 their firmware looks for
    /// (`Raspberry Pi Boot`) and no boot file: they fetch their own.
    pub raspberry_pi: bool,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            vendor_classes: vec![PXE_CLIENT.to_owned()],
            reply_delay_ms: 0,
            tftp_server: None,
            prompt: None,
            local_boot_menu: Some(DEFAULT_LOCAL_BOOT_MENU.to_owned()),
            ipxe_script: None,
            ignore_macs: Vec::new(),
            raspberry_pi: true,
        }
    }
}

/// Sub-option 10 of the BIOS offer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    /// Seconds before the first item boots; 255 waits for the user.
    #[serde(default)]
    pub timeout: u8,
    pub text: String,
}

/// A `[[boot]]` entry: what one architecture boots.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootEntry {
    pub arch: Arch,
    /// TFTP file name (required except for HTTP boot architectures).
    #[serde(default)]
    pub file: String,
    /// BIOS menu text; default: the file name.
    #[serde(default)]
    pub menu: Option<String>,
    /// TFTP server for this entry; default: `proxy.tftp_server`.
    #[serde(default)]
    pub server: Option<Ipv4Addr>,
    /// Put the file and siaddr right in the port-67 offer (with discovery
    /// control 8) instead of a menu or a redirect to port 4011, for firmware
    /// that needs it.
    #[serde(default)]
    pub direct: bool,
    /// URL given to UEFI HTTP boot clients of this architecture. A path
    /// (`/ipxe.efi`) is completed with the address the request came to
    /// and rackboot's own HTTP port (`--http-listen`).
    #[serde(default)]
    pub http_url: Option<String>,
}

impl BootEntry {
    pub fn new(arch: Arch, file: impl Into<String>) -> Self {
        BootEntry {
            arch,
            file: file.into(),
            menu: None,
            server: None,
            direct: false,
            http_url: None,
        }
    }

    /// The text shown in the BIOS menu.
    pub fn menu_text(&self) -> &str {
        self.menu.as_deref().unwrap_or(&self.file)
    }
}

impl Default for BootEntry {
    fn default() -> Self {
        BootEntry::new(Arch::Bios, String::new())
    }
}

/// A `[[mac]]` entry: the boot file of one machine (`mac`) or of a range of
/// machines (`prefix`, e.g. an OUI). The most specific match wins; the file
/// replaces the entry's file in whatever flow the architecture uses (a BIOS
/// machine gets it straight in the offer, without menu).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacOverride {
    #[serde(alias = "prefix")]
    pub mac: MacPattern,
    pub file: String,
}

impl MacOverride {
    pub fn new(mac: MacPattern, file: impl Into<String>) -> Self {
        MacOverride {
            mac,
            file: file.into(),
        }
    }
}

/// A configuration the policy refuses, with what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("proxy.vendor_classes must list at least one non-empty prefix, e.g. \"PXEClient\"")]
    NoVendorClass,
    #[error("boot entry {index} ({arch}) needs a file")]
    MissingFile { index: usize, arch: Arch },
    #[error("boot entry {index} ({arch}) is an HTTP boot architecture and needs http_url")]
    MissingHttpUrl { index: usize, arch: Arch },
    #[error("[[mac]] {0} needs a file")]
    MacMissingFile(MacPattern),
    #[error("{what} is {len} bytes long; at most {max} fit in a DHCP option")]
    TooLong {
        what: String,
        len: usize,
        max: usize,
    },
    #[error(
        "the BIOS boot menu (entries, local boot item and prompt) does not fit in option 43's 255 bytes"
    )]
    MenuTooLarge,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_toml_shape() {
        let text = r#"
            [proxy]
            vendor_classes = ["PXEClient", "HW-Client"]
            reply_delay_ms = 250
            tftp_server = "10.0.0.5"
            prompt = { timeout = 5, text = "F8 for menu" }
            ipxe_script = "http://10.0.0.5/boot.ipxe"
            ignore_macs = ["52:54:00:aa:bb:cc", "00:1b:21"]

            [[boot]]
            arch = "bios"
            file = "undionly.kpxe"
            menu = "Install Linux"

            [[boot]]
            arch = 7
            file = "ipxe.efi"
            direct = true
            http_url = "http://10.0.0.5/ipxe.efi"

            [[mac]]
            mac = "52:54:00:12:34:56"
            file = "special.efi"

            [[mac]]
            prefix = "52:54:01"
            file = "lab.efi"
        "#;
        let config: ProxyConfig = toml::from_str(text).unwrap();
        assert_eq!(config.proxy.vendor_classes, ["PXEClient", "HW-Client"]);
        assert_eq!(config.proxy.reply_delay_ms, 250);
        assert_eq!(config.proxy.tftp_server, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(
            config.proxy.prompt,
            Some(Prompt {
                timeout: 5,
                text: "F8 for menu".into()
            })
        );
        assert_eq!(
            config.proxy.local_boot_menu.as_deref(),
            Some(DEFAULT_LOCAL_BOOT_MENU)
        );
        assert_eq!(config.proxy.ignore_macs.len(), 2);
        assert_eq!(config.boot.len(), 2);
        assert_eq!(config.boot[0].menu_text(), "Install Linux");
        assert_eq!(config.boot[1].arch, Arch::X64Uefi);
        assert!(config.boot[1].direct);
        assert!(config.mac[0].mac.is_exact());
        assert_eq!(config.mac[1].mac.octet_count(), 3);
    }

    #[test]
    fn defaults_answer_pxeclient_only() {
        let config: ProxyConfig = toml::from_str("").unwrap();
        assert_eq!(config.proxy, ProxySettings::default());
        assert_eq!(config.proxy.vendor_classes, [PXE_CLIENT]);
        assert!(config.boot.is_empty());
    }

    #[test]
    fn rejects_typos_and_unknown_arches() {
        assert!(toml::from_str::<ProxyConfig>("[proxy]\nvendor_class = []").is_err());
        assert!(toml::from_str::<ProxyConfig>("[[boot]]\narch = \"sparc\"\nfile = \"x\"").is_err());
        assert!(toml::from_str::<ProxyConfig>("[[boot]]\narch = 3\nfile = \"x\"").is_err());
        assert!(toml::from_str::<ProxyConfig>("[[mac]]\nmac = \"zz\"\nfile = \"x\"").is_err());
    }
}

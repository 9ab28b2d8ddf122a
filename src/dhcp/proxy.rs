//! The proxyDHCP policy (PXE 2.1 proxyDHCP and boot server, as dnsmasq
//! does it): given one received request, either the reply to send or the
//! reason to stay silent. Sans-IO: no sockets, no clock, no allocation on
//! the request-to-reply path.
//!
//! - Port 67 DISCOVER → OFFER, never with an address (yiaddr 0), broadcast
//!   to 255.255.255.255:68, or unicast to giaddr:67 when relayed. BIOS
//!   clients get a boot menu in option 43 and ask again on port 4011; UEFI
//!   clients get siaddr and no option 43, which sends them to port 4011;
//!   `direct` entries, per-MAC BIOS files and iPXE get the file right away.
//! - Port 4011 REQUEST → ACK from port 4011 to ciaddr at the request's
//!   source port, ciaddr echoed and yiaddr 0, with the boot file of the architecture or of the boot item
//!   the client picked (echoed in 43.71).

use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::slice;
use std::time::Duration;

use crate::wire::dhcp::{
    self as wire, BOOTREQUEST, CLIENT_PORT, FLAG_BROADCAST, MAX_OPTION_LEN, PXE_PORT, Packet,
    ReplyBuilder, SERVER_PORT, code, message_type,
};
use crate::wire::pxe::{
    self, BootItem, BootServers, ClientIdentity, LOCAL_BOOT, MenuItem, VendorOptionsWriter,
    discovery,
};

use super::arch::Arch;
use super::config::{BootEntry, ConfigError, ProxyConfig};
pub use super::silence::Silence;

/// A buffer this long always holds a reply: header and cookie (240), 53 (3),
/// 54 (6), 60, 43 and 67 (257 each at most), 97 (19) and END (1).
pub const MAX_REPLY_LEN: usize = 1040;

/// Item types of the BIOS menu's boot entries, as dnsmasq numbers them.
const MENU_ITEM_BASE: u16 = 0x8000;
/// Prompt sent when none is configured: boot the first item at once.
const DEFAULT_PROMPT: (u8, &[u8]) = (0, b"PXE");
/// The longest file name the `file` header field holds (with its NUL);
/// longer names go in option 67.
const FILE_FIELD_MAX: usize = 127;

/// The port a request came in on, and the one its reply leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerPort {
    /// 67: DHCP (proxyDHCP offers).
    Dhcp,
    /// 4011: PXE boot server.
    Pxe,
}

impl ServerPort {
    pub const fn number(self) -> u16 {
        match self {
            ServerPort::Dhcp => SERVER_PORT,
            ServerPort::Pxe => PXE_PORT,
        }
    }
}

/// One received datagram and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The UDP payload.
    pub bytes: &'a [u8],
    /// The port it arrived on.
    pub port: ServerPort,
    /// Its source address and port.
    pub source: SocketAddrV4,
    /// The address of the interface it arrived on (option 54, and the
    /// default TFTP server).
    pub local_addr: Ipv4Addr,
}

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255:68 on the receiving interface.
    Broadcast68,
    /// The relay agent that forwarded the request, at giaddr:67.
    Relay(Ipv4Addr),
    /// A client that has an address.
    Unicast(SocketAddrV4),
}

impl Destination {
    pub fn socket_addr(&self) -> SocketAddrV4 {
        match *self {
            Destination::Broadcast68 => SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
            Destination::Relay(giaddr) => SocketAddrV4::new(giaddr, SERVER_PORT),
            Destination::Unicast(addr) => addr,
        }
    }
}

/// Option 53 of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Offer,
    Ack,
}

/// A reply written into the caller's buffer: send `buf[..len]` from
/// `source_port` to `destination`, after `delay` when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub len: usize,
    pub destination: Destination,
    pub source_port: ServerPort,
    pub delay: Option<Duration>,
    pub kind: ReplyKind,
    /// The client's architecture, for logs and metrics.
    pub arch: Arch,
}

/// Whom a reply answered, as the request said (read while answering, for
/// the boot-status table): borrowed from the request's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered<'a> {
    pub mac: &'a [u8],
    pub ciaddr: Ipv4Addr,
    /// Option 60 as sent.
    pub vendor_class: Option<&'a [u8]>,
}

/// What option 43 of a reply holds.
#[derive(Debug, Clone, Copy)]
enum VendorOptions {
    /// No option 43.
    Absent,
    /// Discovery control 8: boot the offer's file from siaddr.
    UseBootFile,
    /// The BIOS boot menu with its boot servers and prompt.
    BiosMenu,
    /// The boot item the client asked for, echoed.
    BootItem(BootItem),
    /// What a Raspberry Pi's boot ROM checks for.
    RaspberryPi,
}

/// OUIs of the Raspberry Pi Foundation and Raspberry Pi Trading, whose
/// boot ROMs send arch 0 like a BIOS PXE ROM.
const RASPBERRY_PI_OUIS: [[u8; 3]; 6] = [
    [0xb8, 0x27, 0xeb],
    [0xdc, 0xa6, 0x32],
    [0xe4, 0x5f, 0x01],
    [0x28, 0xcd, 0xc1],
    [0xd8, 0x3a, 0xdd],
    [0x2c, 0xcf, 0x67],
];
/// The menu text a Raspberry Pi's boot ROM looks for in option 43 (as
/// dnsmasq's `pxe-service=0,"Raspberry Pi Boot"` writes it).
pub const RASPBERRY_PI_BOOT: &str = "Raspberry Pi Boot";

fn is_raspberry_pi(mac: &[u8]) -> bool {
    mac.get(..3)
        .is_some_and(|oui| RASPBERRY_PI_OUIS.iter().any(|o| o == oui))
}

/// The decisions a reply is written from.
#[derive(Debug, Clone, Copy)]
struct Plan<'c> {
    file: Option<&'c str>,
    siaddr: Ipv4Addr,
    vendor_options: VendorOptions,
}

/// A plan with the reply's type and option 60.
#[derive(Debug, Clone, Copy)]
struct Answer<'c> {
    kind: ReplyKind,
    vendor_class: &'c [u8],
    plan: Plan<'c>,
}

/// The proxy policy over a validated configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    config: ProxyConfig,
    /// The port an `http_url` given as a path is completed with.
    http_port: u16,
}

impl Policy {
    /// Validates `config`: names that cannot fit their field, entries
    /// without a file, a BIOS menu too large for option 43.
    pub fn new(config: ProxyConfig) -> Result<Self, ConfigError> {
        validate(&config)?;
        let policy = Policy {
            config,
            http_port: 80,
        };
        // The menu's size does not depend on the address: try the widest.
        policy
            .write_bios_menu(&mut [0; MAX_OPTION_LEN], Ipv4Addr::BROADCAST)
            .map_err(|_| ConfigError::MenuTooLarge)?;
        Ok(policy)
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// The port of rackboot's own HTTP server: an `http_url` written as a
    /// path (`/ipxe.efi`) becomes `http://ADDRESS:PORT/ipxe.efi`, with the
    /// address the request came to (UEFI's proxy-offer path needs an IP
    /// literal).
    pub fn with_http_port(mut self, port: u16) -> Policy {
        self.http_port = port;
        self
    }

    /// Answers one request, writing the reply into `out` (see
    /// [`MAX_REPLY_LEN`]). Never allocates.
    pub fn answer(&self, request: &Request<'_>, out: &mut [u8]) -> Result<Reply, Silence> {
        self.answer_whom(request, out).map(|(reply, _)| reply)
    }

    /// [`Policy::answer`], and whom it answered.
    pub fn answer_whom<'r>(
        &self,
        request: &Request<'r>,
        out: &mut [u8],
    ) -> Result<(Reply, Answered<'r>), Silence> {
        let packet = Packet::new_checked(request.bytes).map_err(Silence::Malformed)?;
        let client = ClientIdentity::from_options(packet.options());
        let (kind, arch, vendor_class) = self.classify(&packet, &client, request.port)?;
        let mac = packet.chaddr();
        let local = request.local_addr;
        let plan = match kind {
            ReplyKind::Offer => self.plan_offer(arch, &client, mac, local)?,
            ReplyKind::Ack => self.plan_ack(arch, &client, mac, local)?,
        };
        let len = self
            .write_reply(
                out,
                &packet,
                &client,
                &Answer {
                    kind,
                    vendor_class,
                    plan,
                },
                local,
            )
            .map_err(Silence::ReplyTooLarge)?;
        let (destination, source_port, delay) = self.route(kind, &packet, request.source);
        let reply = Reply {
            len,
            destination,
            source_port,
            delay,
            kind,
            arch,
        };
        let answered = Answered {
            mac,
            ciaddr: packet.ciaddr(),
            vendor_class: client.vendor_class,
        };
        Ok((reply, answered))
    }

    /// Whether to answer at all: what kind of reply, for which
    /// architecture, with which vendor class echoed in option 60.
    fn classify(
        &self,
        packet: &Packet<'_>,
        client: &ClientIdentity<'_>,
        port: ServerPort,
    ) -> Result<(ReplyKind, Arch, &[u8]), Silence> {
        if packet.op() != BOOTREQUEST {
            return Err(Silence::NotRequest);
        }
        let vendor_class = self.matching_vendor_class(client).ok_or(Silence::NotPxe)?;
        let kind = match (port, packet.message_type()) {
            (_, None) => return Err(Silence::NoMessageType),
            (_, Some(message_type::INFORM)) => return Err(Silence::Inform),
            (ServerPort::Dhcp, Some(message_type::REQUEST)) => return Err(Silence::RequestOn67),
            (ServerPort::Dhcp, Some(message_type::DISCOVER)) => ReplyKind::Offer,
            (ServerPort::Pxe, Some(message_type::REQUEST)) => ReplyKind::Ack,
            (port, Some(other)) => {
                return Err(Silence::UnexpectedMessage {
                    message_type: other,
                    port: port.number(),
                });
            }
        };
        let arch_code = client.arch.ok_or(Silence::NoArch)?;
        let arch = Arch::from_code(arch_code).ok_or(Silence::UnknownArch(arch_code))?;
        let mac = packet.chaddr();
        if self
            .config
            .proxy
            .ignore_macs
            .iter()
            .any(|pattern| pattern.matches(mac))
        {
            return Err(Silence::IgnoredMac);
        }
        // HTTP boot clients expect their own class echoed (UEFI 2.5, 24.7).
        let vendor_class = if arch.is_http() {
            pxe::HTTP_CLIENT
        } else {
            vendor_class
        };
        Ok((kind, arch, vendor_class))
    }

    /// Destination, source port and delay of a reply.
    fn route(
        &self,
        kind: ReplyKind,
        packet: &Packet<'_>,
        source: SocketAddrV4,
    ) -> (Destination, ServerPort, Option<Duration>) {
        match kind {
            ReplyKind::Offer => {
                let giaddr = packet.giaddr();
                let destination = if giaddr.is_unspecified() {
                    Destination::Broadcast68
                } else {
                    Destination::Relay(giaddr)
                };
                let delay = Duration::from_millis(self.config.proxy.reply_delay_ms);
                (
                    destination,
                    ServerPort::Dhcp,
                    Some(delay).filter(|d| !d.is_zero()),
                )
            }
            ReplyKind::Ack => {
                let ciaddr = packet.ciaddr();
                let ip = if ciaddr.is_unspecified() {
                    *source.ip()
                } else {
                    ciaddr
                };
                let destination = Destination::Unicast(SocketAddrV4::new(ip, source.port()));
                (destination, ServerPort::Pxe, None)
            }
        }
    }

    /// The option 60 prefix the client matched: HTTP boot's `HTTPClient`, or
    /// one of the configured PXE vendor classes.
    fn matching_vendor_class(&self, client: &ClientIdentity<'_>) -> Option<&[u8]> {
        if client.vendor_class_starts_with(pxe::HTTP_CLIENT) {
            return Some(pxe::HTTP_CLIENT);
        }
        self.config
            .proxy
            .vendor_classes
            .iter()
            .map(|class| class.as_bytes())
            .find(|class| client.vendor_class_starts_with(class))
    }

    /// The port-67 offer.
    fn plan_offer<'c>(
        &'c self,
        arch: Arch,
        client: &ClientIdentity<'_>,
        mac: &[u8],
        local: Ipv4Addr,
    ) -> Result<Plan<'c>, Silence> {
        if arch.is_http() {
            return self.plan_http(arch);
        }
        let entry = self.entries_for(arch).next();
        let siaddr = self.tftp_server(entry, local);
        let direct = |file: &'c str| Plan {
            file: Some(file),
            siaddr,
            vendor_options: VendorOptions::UseBootFile,
        };

        // iPXE does not ask on 4011 once the offer names a file, and must get
        // its script rather than itself again.
        if client.is_ipxe() {
            let file = self
                .ipxe_file(entry, mac)
                .ok_or(Silence::NoBootEntry(arch))?;
            return Ok(Plan {
                file: Some(file),
                siaddr,
                vendor_options: VendorOptions::Absent,
            });
        }
        let over = self.mac_override(mac);
        if arch == Arch::Bios
            && over.is_none()
            && self.config.proxy.raspberry_pi
            && is_raspberry_pi(mac)
        {
            // The Pi fetches its own files (bootcode.bin, <serial>/start4.elf)
            // from siaddr once option 43 names it.
            return Ok(Plan {
                file: None,
                siaddr,
                vendor_options: VendorOptions::RaspberryPi,
            });
        }
        match (entry, over) {
            (None, None) => Err(Silence::NoBootEntry(arch)),
            // A machine with its own file needs no menu.
            (_, Some(file)) if arch == Arch::Bios => Ok(direct(file)),
            (Some(entry), over) if entry.direct => Ok(direct(over.unwrap_or(&entry.file))),
            (_, _) if arch == Arch::Bios => Ok(Plan {
                file: None,
                siaddr: Ipv4Addr::UNSPECIFIED,
                vendor_options: VendorOptions::BiosMenu,
            }),
            // No usable option 43: EDK2 asks our option-54 address on 4011.
            (_, _) => Ok(Plan {
                file: None,
                siaddr: local,
                vendor_options: VendorOptions::Absent,
            }),
        }
    }

    /// The port-4011 ack.
    fn plan_ack(
        &self,
        arch: Arch,
        client: &ClientIdentity<'_>,
        mac: &[u8],
        local: Ipv4Addr,
    ) -> Result<Plan<'_>, Silence> {
        if arch.is_http() {
            return self.plan_http(arch);
        }
        let item = client.boot_item().transpose().map_err(Silence::Malformed)?;
        let entry = match item {
            None => self.entries_for(arch).next(),
            Some(item) if item.item_type == LOCAL_BOOT => return Err(Silence::LocalBootItem),
            Some(item) => Some(self.entry_for_item(arch, item).ok_or(
                Silence::UnknownBootItem {
                    item_type: item.item_type,
                    layer: item.layer,
                },
            )?),
        };
        let file = if client.is_ipxe() {
            self.ipxe_file(entry, mac)
        } else {
            self.mac_override(mac)
                .or(entry.map(|entry| entry.file.as_str()))
        };
        let file = file.ok_or(Silence::NoBootEntry(arch))?;
        let vendor_options = item.map_or(VendorOptions::Absent, VendorOptions::BootItem);
        Ok(Plan {
            file: Some(file),
            siaddr: self.tftp_server(entry, local),
            vendor_options,
        })
    }

    /// HTTP boot: the URL as the file, only where one is configured.
    fn plan_http(&self, arch: Arch) -> Result<Plan<'_>, Silence> {
        let url = self
            .config
            .boot
            .iter()
            .filter(|entry| entry.arch == arch || entry.arch == arch.pxe_equivalent())
            .find_map(|entry| entry.http_url.as_deref())
            .ok_or(Silence::NoBootEntry(arch))?;
        Ok(Plan {
            file: Some(url),
            siaddr: Ipv4Addr::UNSPECIFIED,
            vendor_options: VendorOptions::Absent,
        })
    }

    fn entries_for(&self, arch: Arch) -> impl Iterator<Item = &BootEntry> {
        self.config
            .boot
            .iter()
            .filter(move |entry| entry.arch == arch)
    }

    /// Menu item 0x8000 + n is the n-th entry of the architecture. Layers
    /// other than 0 (and BIS credential requests) are not served.
    fn entry_for_item(&self, arch: Arch, item: BootItem) -> Option<&BootEntry> {
        let index = item.item_type.checked_sub(MENU_ITEM_BASE)?;
        if item.layer != 0 {
            return None;
        }
        self.entries_for(arch).nth(usize::from(index))
    }

    /// The file of the most specific `[[mac]]` match; the first on a tie.
    fn mac_override(&self, mac: &[u8]) -> Option<&str> {
        self.config
            .mac
            .iter()
            .rev()
            .filter(|over| over.mac.matches(mac))
            .max_by_key(|over| over.mac.octet_count())
            .map(|over| over.file.as_str())
    }

    /// iPXE's file: the script when configured, else what firmware would get.
    fn ipxe_file<'c>(&'c self, entry: Option<&'c BootEntry>, mac: &[u8]) -> Option<&'c str> {
        let script = self.config.proxy.ipxe_script.as_deref();
        script
            .or_else(|| self.mac_override(mac))
            .or(entry.map(|entry| entry.file.as_str()))
    }

    fn tftp_server(&self, entry: Option<&BootEntry>, local: Ipv4Addr) -> Ipv4Addr {
        entry
            .and_then(|entry| entry.server)
            .or(self.config.proxy.tftp_server)
            .unwrap_or(local)
    }

    /// Option 43 of a BIOS offer: discovery control 3, one boot server (us,
    /// since we answer 4011) per entry, the menu and the prompt.
    fn write_bios_menu(
        &self,
        buf: &mut [u8; MAX_OPTION_LEN],
        boot_server: Ipv4Addr,
    ) -> Result<usize, wire::Error> {
        let proxy = &self.config.proxy;
        let entries = || (MENU_ITEM_BASE..=u16::MAX).zip(self.entries_for(Arch::Bios));
        let mut w = VendorOptionsWriter::new(buf);
        w.discovery_control(discovery::USE_SERVER_LIST)?;
        w.boot_servers(entries().map(|(item_type, _)| BootServers {
            server_type: item_type,
            addrs: slice::from_ref(&boot_server),
        }))?;
        let local_boot = proxy.local_boot_menu.as_deref().map(|text| MenuItem {
            item_type: LOCAL_BOOT,
            text: text.as_bytes(),
        });
        w.boot_menu(
            entries()
                .map(|(item_type, entry)| MenuItem {
                    item_type,
                    text: entry.menu_text().as_bytes(),
                })
                .chain(local_boot),
        )?;
        let (timeout, text) = match &proxy.prompt {
            Some(prompt) => (prompt.timeout, prompt.text.as_bytes()),
            None => DEFAULT_PROMPT,
        };
        w.menu_prompt(timeout, text)?;
        w.finish()
    }

    fn write_reply(
        &self,
        out: &mut [u8],
        request: &Packet<'_>,
        client: &ClientIdentity<'_>,
        answer: &Answer<'_>,
        local: Ipv4Addr,
    ) -> Result<usize, wire::Error> {
        let Answer {
            kind,
            vendor_class,
            plan,
        } = answer;
        let mut reply = ReplyBuilder::new(out)?;
        let asked = request.header();
        let header = reply.header_mut();
        header.htype = asked.htype;
        header.hlen = asked.hlen;
        header.xid = asked.xid;
        header.giaddr = asked.giaddr;
        header.chaddr = asked.chaddr;
        header.siaddr = plan.siaddr.octets();
        let mut flags = asked.flags.get();
        match *kind {
            // Clients without an address can only receive a broadcast.
            ReplyKind::Offer => flags |= FLAG_BROADCAST,
            // The boot server offers no address: the client's own stays in
            // ciaddr and yiaddr stays 0 (PXE 2.1's boot server ACK, as
            // pixiecore and dnsmasq's proxy path send it).
            ReplyKind::Ack => {
                header.ciaddr = asked.ciaddr;
                // An HTTP boot answer has no TFTP server to name.
                if !plan.siaddr.is_unspecified() {
                    header.set_sname(TextBuf::display(&plan.siaddr)?.as_bytes())?;
                }
            }
        }
        header.flags.set(flags);
        let mut url = UrlBuf::default();
        let file = match plan.file {
            // A path for HTTP boot: completed to this server's URL.
            Some(path) if path.starts_with('/') && vendor_class == &pxe::HTTP_CLIENT => {
                write!(url, "http://{local}:{}{path}", self.http_port).map_err(|_| {
                    wire::Error::FieldTooLong {
                        field: MAX_OPTION_LEN,
                        len: path.len(),
                    }
                })?;
                Some(url.as_bytes())
            }
            other => other.map(str::as_bytes),
        };
        let long_file = match file {
            Some(file) if file.len() <= FILE_FIELD_MAX => {
                header.set_file(file)?;
                None
            }
            other => other,
        };

        let message = match *kind {
            ReplyKind::Offer => message_type::OFFER,
            ReplyKind::Ack => message_type::ACK,
        };
        reply.push_option(code::MESSAGE_TYPE, &[message])?;
        reply.push_option(code::SERVER_ID, &local.octets())?;
        reply.push_option(code::VENDOR_CLASS, vendor_class)?;
        if let Some(machine_id) = client.machine_id {
            reply.push_option(code::CLIENT_MACHINE_ID, machine_id)?;
        }
        let mut vendor_options = [0; MAX_OPTION_LEN];
        let vendor_options_len = match plan.vendor_options {
            VendorOptions::Absent => None,
            VendorOptions::UseBootFile => {
                let mut w = VendorOptionsWriter::new(&mut vendor_options);
                w.discovery_control(discovery::USE_BOOT_FILE)?;
                Some(w.finish()?)
            }
            VendorOptions::BiosMenu => Some(self.write_bios_menu(&mut vendor_options, local)?),
            VendorOptions::BootItem(item) => {
                let mut w = VendorOptionsWriter::new(&mut vendor_options);
                w.boot_item(item)?;
                Some(w.finish()?)
            }
            VendorOptions::RaspberryPi => {
                let mut w = VendorOptionsWriter::new(&mut vendor_options);
                w.boot_menu([MenuItem {
                    item_type: LOCAL_BOOT,
                    text: RASPBERRY_PI_BOOT.as_bytes(),
                }])?;
                w.menu_prompt(0, b"PXE")?;
                Some(w.finish()?)
            }
        };
        if let Some(len) = vendor_options_len {
            reply.push_option(
                code::VENDOR_SPECIFIC,
                vendor_options.get(..len).unwrap_or_default(),
            )?;
        }
        if let Some(file) = long_file {
            reply.push_option(code::BOOTFILE_NAME, file)?;
        }
        reply.finish()
    }
}

/// Checks what [`Policy::answer`] relies on and cannot check cheaply.
fn validate(config: &ProxyConfig) -> Result<(), ConfigError> {
    let proxy = &config.proxy;
    if proxy.vendor_classes.is_empty() || proxy.vendor_classes.iter().any(String::is_empty) {
        return Err(ConfigError::NoVendorClass);
    }
    let fits = |what: &str, text: &str, max: usize| {
        if text.len() <= max {
            Ok(())
        } else {
            Err(ConfigError::TooLong {
                what: what.to_owned(),
                len: text.len(),
                max,
            })
        }
    };
    for class in &proxy.vendor_classes {
        fits("proxy.vendor_classes entry", class, MAX_OPTION_LEN)?;
    }
    if let Some(script) = &proxy.ipxe_script {
        fits("proxy.ipxe_script", script, MAX_OPTION_LEN)?;
    }
    for (index, entry) in config.boot.iter().enumerate() {
        let arch = entry.arch;
        if arch.is_http() && entry.http_url.is_none() {
            return Err(ConfigError::MissingHttpUrl { index, arch });
        }
        if !arch.is_http() && entry.file.is_empty() {
            return Err(ConfigError::MissingFile { index, arch });
        }
        fits(
            &format!("boot entry {index} file"),
            &entry.file,
            MAX_OPTION_LEN,
        )?;
        if let Some(url) = &entry.http_url {
            // A path gets `http://255.255.255.255:65535` in front.
            let room = if url.starts_with('/') {
                MAX_OPTION_LEN - 28
            } else {
                MAX_OPTION_LEN
            };
            fits(&format!("boot entry {index} http_url"), url, room)?;
        }
    }
    for over in &config.mac {
        if over.file.is_empty() {
            return Err(ConfigError::MacMissingFile(over.mac));
        }
        fits(
            &format!("mac {} file", over.mac),
            &over.file,
            MAX_OPTION_LEN,
        )?;
    }
    Ok(())
}

/// Formats a short value (an address) without allocating.
struct TextBuf {
    buf: [u8; 64],
    len: usize,
}

/// An HTTP boot URL composed for one reply (no allocation).
struct UrlBuf {
    buf: [u8; MAX_OPTION_LEN],
    len: usize,
}

impl Default for UrlBuf {
    fn default() -> Self {
        UrlBuf {
            buf: [0; MAX_OPTION_LEN],
            len: 0,
        }
    }
}

impl UrlBuf {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for UrlBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl TextBuf {
    fn display(value: &impl fmt::Display) -> Result<Self, wire::Error> {
        let mut text = TextBuf {
            buf: [0; 64],
            len: 0,
        };
        write!(text, "{value}").map_err(|_| wire::Error::FieldTooLong { field: 64, len: 64 })?;
        Ok(text)
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl fmt::Write for TextBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

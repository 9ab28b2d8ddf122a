//! PXE 2.1 over DHCP: the vendor sub-options carried in option 43, and the
//! options a PXE client uses to say who it is (60, 77, 93, 94, 97, 175).
//!
//! Sub-options share the DHCP option format (code, length, payload; PAD and
//! END), so [`Options`] iterates them too.

use std::net::Ipv4Addr;

use super::dhcp::{Error, MAX_OPTION_LEN, Options, code};

/// Sub-option codes inside option 43 (PXE 2.1, table 2-1).
pub mod sub {
    pub const DISCOVERY_CONTROL: u8 = 6;
    pub const BOOT_SERVERS: u8 = 8;
    pub const BOOT_MENU: u8 = 9;
    pub const MENU_PROMPT: u8 = 10;
    pub const BOOT_ITEM: u8 = 71;
}

/// Values of sub-option 6 (bit field).
pub mod discovery {
    /// Bit 0: do not broadcast to discover boot servers.
    pub const NO_BROADCAST: u8 = 1;
    /// Bit 1: do not multicast to discover boot servers.
    pub const NO_MULTICAST: u8 = 2;
    /// Bit 3: skip discovery, use the offer's file and siaddr.
    pub const USE_BOOT_FILE: u8 = 8;
    /// What dnsmasq sends with a boot-server list: unicast to the list only.
    pub const USE_SERVER_LIST: u8 = NO_BROADCAST | NO_MULTICAST;
}

/// Boot item type of "boot from the local disk" (PXE 2.1).
pub const LOCAL_BOOT: u16 = 0;
/// Bit of the layer field that asks for BIS credentials (unsupported).
pub const LAYER_CREDENTIALS: u16 = 0x8000;

/// Vendor class prefix of a UEFI HTTP boot client (UEFI 2.5, 24.7).
pub const HTTP_CLIENT: &[u8] = b"HTTPClient";
/// The user class iPXE sends.
pub const IPXE_USER_CLASS: &[u8] = b"iPXE";

/// Sub-option 71: the boot item a client asks a boot server for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootItem {
    pub item_type: u16,
    pub layer: u16,
}

impl BootItem {
    /// Parses the 4-byte payload of sub-option 71.
    pub fn parse(data: &[u8]) -> Result<Self, Error> {
        match data {
            [t0, t1, l0, l1] => Ok(BootItem {
                item_type: u16::from_be_bytes([*t0, *t1]),
                layer: u16::from_be_bytes([*l0, *l1]),
            }),
            _ => Err(Error::BadOptionLength {
                code: sub::BOOT_ITEM,
                len: data.len(),
            }),
        }
    }

    /// Finds sub-option 71 in the payload of option 43.
    pub fn find(vendor_options: &[u8]) -> Option<Result<Self, Error>> {
        Options::new(vendor_options)
            .find(|&(c, _)| c == sub::BOOT_ITEM)
            .map(|(_, data)| BootItem::parse(data))
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let [t0, t1] = self.item_type.to_be_bytes();
        let [l0, l1] = self.layer.to_be_bytes();
        [t0, t1, l0, l1]
    }
}

/// One entry of sub-option 8: a boot server type and its addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootServers<'s> {
    pub server_type: u16,
    pub addrs: &'s [Ipv4Addr],
}

/// One entry of sub-option 9: a boot item type and its menu text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MenuItem<'s> {
    pub item_type: u16,
    pub text: &'s [u8],
}

/// Writes the payload of option 43 into a caller-owned buffer: sub-options
/// in call order, then END on [`finish`](Self::finish). The payload is
/// limited to 255 bytes whatever the buffer size.
pub struct VendorOptionsWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> VendorOptionsWriter<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        let cap = buf.len().min(MAX_OPTION_LEN);
        VendorOptionsWriter {
            buf: &mut buf[..cap],
            len: 0,
        }
    }

    /// Sub-option 6.
    pub fn discovery_control(&mut self, bits: u8) -> Result<(), Error> {
        self.sub_option(sub::DISCOVERY_CONTROL, |w| w.put(&[bits]))
    }

    /// Sub-option 8: per entry type u16, count u8, addresses.
    pub fn boot_servers<'s>(
        &mut self,
        entries: impl IntoIterator<Item = BootServers<'s>>,
    ) -> Result<(), Error> {
        self.sub_option(sub::BOOT_SERVERS, |w| {
            for entry in entries {
                let count = u8::try_from(entry.addrs.len()).map_err(|_| Error::OptionTooLong {
                    code: sub::BOOT_SERVERS,
                    len: entry.addrs.len(),
                })?;
                w.put(&entry.server_type.to_be_bytes())?;
                w.put(&[count])?;
                for addr in entry.addrs {
                    w.put(&addr.octets())?;
                }
            }
            Ok(())
        })
    }

    /// Sub-option 9: per item type u16, text length u8, text.
    pub fn boot_menu<'s>(
        &mut self,
        items: impl IntoIterator<Item = MenuItem<'s>>,
    ) -> Result<(), Error> {
        self.sub_option(sub::BOOT_MENU, |w| {
            for item in items {
                let len = u8::try_from(item.text.len()).map_err(|_| Error::OptionTooLong {
                    code: sub::BOOT_MENU,
                    len: item.text.len(),
                })?;
                w.put(&item.item_type.to_be_bytes())?;
                w.put(&[len])?;
                w.put(item.text)?;
            }
            Ok(())
        })
    }

    /// Sub-option 10: timeout in seconds (0: pick the first item at once,
    /// 255: wait for the user), then the prompt text.
    pub fn menu_prompt(&mut self, timeout: u8, text: &[u8]) -> Result<(), Error> {
        self.sub_option(sub::MENU_PROMPT, |w| {
            w.put(&[timeout])?;
            w.put(text)
        })
    }

    /// Sub-option 71.
    pub fn boot_item(&mut self, item: BootItem) -> Result<(), Error> {
        self.sub_option(sub::BOOT_ITEM, |w| w.put(&item.to_bytes()))
    }

    /// Appends END and returns the payload length.
    pub fn finish(mut self) -> Result<usize, Error> {
        self.put(&[code::END])?;
        Ok(self.len)
    }

    /// Writes code and a placeholder length, runs `body`, then patches the
    /// length in. On error the writer is left as it was before the call.
    fn sub_option(
        &mut self,
        code: u8,
        body: impl FnOnce(&mut Self) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let start = self.len;
        let result = self.write_sub_option(start, code, body);
        if result.is_err() {
            self.len = start;
        }
        result
    }

    fn write_sub_option(
        &mut self,
        start: usize,
        code: u8,
        body: impl FnOnce(&mut Self) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.put(&[code, 0])?;
        body(self)?;
        let payload = self.len - start - 2;
        let len = u8::try_from(payload).map_err(|_| Error::OptionTooLong { code, len: payload })?;
        // `put` wrote this byte above, so it is in bounds.
        self.buf[start + 1] = len;
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let end = self.len + bytes.len();
        let too_long = Error::OptionTooLong {
            code: code::VENDOR_SPECIFIC,
            len: end,
        };
        let slot = self.buf.get_mut(self.len..end).ok_or(too_long)?;
        slot.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

/// Iterator over the items of sub-option 9; stops at a truncated item.
#[derive(Debug, Clone)]
pub struct MenuItems<'a> {
    rest: &'a [u8],
}

impl<'a> MenuItems<'a> {
    pub fn new(payload: &'a [u8]) -> Self {
        MenuItems { rest: payload }
    }
}

impl<'a> Iterator for MenuItems<'a> {
    type Item = MenuItem<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let (head, rest) = self.rest.split_at_checked(3)?;
        let (text, rest) = rest.split_at_checked(usize::from(head[2]))?;
        self.rest = rest;
        Some(MenuItem {
            item_type: u16::from_be_bytes([head[0], head[1]]),
            text,
        })
    }
}

/// Iterator over `(server type, address)` pairs of sub-option 8; stops at a
/// truncated entry.
#[derive(Debug, Clone)]
pub struct BootServerAddrs<'a> {
    rest: &'a [u8],
    server_type: u16,
    remaining: u8,
}

impl<'a> BootServerAddrs<'a> {
    pub fn new(payload: &'a [u8]) -> Self {
        BootServerAddrs {
            rest: payload,
            server_type: 0,
            remaining: 0,
        }
    }
}

impl Iterator for BootServerAddrs<'_> {
    type Item = (u16, Ipv4Addr);

    fn next(&mut self) -> Option<Self::Item> {
        while self.remaining == 0 {
            let (head, rest) = self.rest.split_at_checked(3)?;
            self.server_type = u16::from_be_bytes([head[0], head[1]]);
            self.remaining = head[2];
            self.rest = rest;
        }
        let (addr, rest) = self.rest.split_first_chunk::<4>()?;
        self.rest = rest;
        self.remaining -= 1;
        Some((self.server_type, Ipv4Addr::from(*addr)))
    }
}

/// Option 94: the client's network interface (UNDI) version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UndiVersion {
    pub interface_type: u8,
    pub major: u8,
    pub minor: u8,
}

impl UndiVersion {
    pub fn parse(data: &[u8]) -> Option<Self> {
        match data {
            [interface_type, major, minor] => Some(UndiVersion {
                interface_type: *interface_type,
                major: *major,
                minor: *minor,
            }),
            _ => None,
        }
    }
}

/// Option 93: the first architecture of the list; `None` when it holds less
/// than one u16 (dnsmasq treats that as absent).
pub fn client_arch(data: &[u8]) -> Option<u16> {
    let (first, _) = data.split_first_chunk::<2>()?;
    Some(u16::from_be_bytes(*first))
}

/// Option 97: the 17 bytes to echo when they are type 0 followed by a GUID.
pub fn machine_id(data: &[u8]) -> Option<&[u8; 17]> {
    let id: &[u8; 17] = data.try_into().ok()?;
    (id[0] == 0).then_some(id)
}

/// Option 77: whether one of the user classes is `class`. RFC 3004 encodes
/// a list of length-prefixed instances; iPXE sends the bare string `iPXE`.
/// Both are accepted (a bare string is never valid RFC 3004 for "iPXE":
/// its first byte, 'i' = 105, is longer than what follows).
pub fn user_class_contains(data: &[u8], class: &[u8]) -> bool {
    data == class || UserClasses::new(data).any(|instance| instance == class)
}

/// The instances of an RFC 3004 user class option; yields nothing when the
/// payload is not well-formed RFC 3004.
#[derive(Debug, Clone)]
pub struct UserClasses<'a> {
    rest: &'a [u8],
}

impl<'a> UserClasses<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        let well_formed = {
            let mut rest = data;
            loop {
                match rest.split_first() {
                    None => break true,
                    Some((&0, _)) => break false,
                    Some((&len, after)) => match after.get(usize::from(len)..) {
                        Some(next) => rest = next,
                        None => break false,
                    },
                }
            }
        };
        UserClasses {
            rest: if well_formed { data } else { &[] },
        }
    }
}

impl<'a> Iterator for UserClasses<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<Self::Item> {
        let (&len, after) = self.rest.split_first()?;
        let (instance, rest) = after.split_at_checked(usize::from(len))?;
        self.rest = rest;
        Some(instance)
    }
}

/// What a PXE client says about itself, gathered in one pass over the
/// options. The first occurrence of each option wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientIdentity<'a> {
    /// Option 60, raw (e.g. `PXEClient:Arch:00007:UNDI:003000`).
    pub vendor_class: Option<&'a [u8]>,
    /// Option 93, first entry; `None` when absent or empty.
    pub arch: Option<u16>,
    /// Option 94.
    pub undi: Option<UndiVersion>,
    /// Option 97 when it is 17 bytes of type 0 (Intel agents omit it).
    pub machine_id: Option<&'a [u8; 17]>,
    /// Option 77, raw.
    pub user_class: Option<&'a [u8]>,
    /// Option 175 is present: iPXE's encapsulated options.
    pub ipxe_options: bool,
    /// Option 43, raw payload.
    pub vendor_options: Option<&'a [u8]>,
}

impl<'a> ClientIdentity<'a> {
    pub fn from_options(options: Options<'a>) -> Self {
        let mut id = ClientIdentity::default();
        let mut seen_arch = false;
        for (option, data) in options {
            match option {
                code::VENDOR_CLASS if id.vendor_class.is_none() => id.vendor_class = Some(data),
                code::CLIENT_ARCH if !seen_arch => {
                    seen_arch = true;
                    id.arch = client_arch(data);
                }
                code::CLIENT_NDI if id.undi.is_none() => id.undi = UndiVersion::parse(data),
                code::CLIENT_MACHINE_ID if id.machine_id.is_none() => {
                    id.machine_id = machine_id(data)
                }
                code::USER_CLASS if id.user_class.is_none() => id.user_class = Some(data),
                code::IPXE_ENCAP => id.ipxe_options = true,
                code::VENDOR_SPECIFIC if id.vendor_options.is_none() => {
                    id.vendor_options = Some(data)
                }
                _ => {}
            }
        }
        id
    }

    /// iPXE announces itself with user class `iPXE` or with option 175.
    pub fn is_ipxe(&self) -> bool {
        self.ipxe_options
            || self
                .user_class
                .is_some_and(|uc| user_class_contains(uc, IPXE_USER_CLASS))
    }

    /// Sub-option 71 of option 43, if the client sent one.
    pub fn boot_item(&self) -> Option<Result<BootItem, Error>> {
        BootItem::find(self.vendor_options?)
    }

    /// Whether option 60 begins with `prefix`.
    pub fn vendor_class_starts_with(&self, prefix: &[u8]) -> bool {
        self.vendor_class.is_some_and(|vc| vc.starts_with(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_bios_offer_payload() {
        let mut buf = [0; 255];
        let mut w = VendorOptionsWriter::new(&mut buf);
        w.discovery_control(discovery::USE_SERVER_LIST).unwrap();
        let addr = [Ipv4Addr::new(10, 0, 0, 1)];
        w.boot_servers([BootServers {
            server_type: 0x8000,
            addrs: &addr,
        }])
        .unwrap();
        w.boot_menu([
            MenuItem {
                item_type: 0x8000,
                text: b"Linux",
            },
            MenuItem {
                item_type: LOCAL_BOOT,
                text: b"Disk",
            },
        ])
        .unwrap();
        w.menu_prompt(0, b"PXE").unwrap();
        let len = w.finish().unwrap();
        let expected: &[u8] = &[
            6, 1, 3, //
            8, 7, 0x80, 0x00, 1, 10, 0, 0, 1, //
            9, 15, 0x80, 0x00, 5, b'L', b'i', b'n', b'u', b'x', 0, 0, 4, b'D', b'i', b's',
            b'k', //
            10, 4, 0, b'P', b'X', b'E', //
            255,
        ];
        assert_eq!(&buf[..len], expected);

        let subs: Vec<_> = Options::new(&buf[..len]).collect();
        assert_eq!(subs.len(), 4);
        let menu: Vec<_> = MenuItems::new(subs[2].1)
            .map(|i| (i.item_type, i.text))
            .collect();
        assert_eq!(menu, vec![(0x8000, &b"Linux"[..]), (0, &b"Disk"[..])]);
        let servers: Vec<_> = BootServerAddrs::new(subs[1].1).collect();
        assert_eq!(servers, vec![(0x8000, Ipv4Addr::new(10, 0, 0, 1))]);
    }

    #[test]
    fn boot_item_round_trip() {
        let mut buf = [0; 16];
        let mut w = VendorOptionsWriter::new(&mut buf);
        let item = BootItem {
            item_type: 0x8001,
            layer: 0,
        };
        w.boot_item(item).unwrap();
        let len = w.finish().unwrap();
        assert_eq!(&buf[..len], &[71, 4, 0x80, 0x01, 0, 0, 255]);
        assert_eq!(BootItem::find(&buf[..len]), Some(Ok(item)));
        assert_eq!(
            BootItem::find(&[71, 3, 0, 0, 0]),
            Some(Err(Error::BadOptionLength { code: 71, len: 3 }))
        );
        assert_eq!(BootItem::find(&[6, 1, 8, 255]), None);
    }

    #[test]
    fn writer_never_exceeds_255_bytes_and_rolls_back() {
        let mut buf = [0; 1024];
        let mut w = VendorOptionsWriter::new(&mut buf);
        w.menu_prompt(0, &[b'x'; 200]).unwrap();
        let before = w.len;
        assert!(w.menu_prompt(0, &[b'y'; 60]).is_err());
        assert_eq!(w.len, before, "a failed sub-option leaves nothing behind");
        assert!(w.menu_prompt(0, &[b'z'; 300]).is_err());
        let len = w.finish().unwrap();
        assert_eq!(len, 2 + 201 + 1);

        let mut small = [0; 4];
        let mut w = VendorOptionsWriter::new(&mut small);
        w.discovery_control(8).unwrap();
        assert!(w.finish().is_ok());
        let mut w = VendorOptionsWriter::new(&mut small[..3]);
        w.discovery_control(8).unwrap();
        assert!(w.finish().is_err());
    }

    #[test]
    fn reads_client_identity() {
        let options: &[u8] = &[
            53, 1, 1, //
            93, 2, 0, 7, //
            94, 3, 1, 3, 0, //
            97, 17, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, //
            60, 9, b'P', b'X', b'E', b'C', b'l', b'i', b'e', b'n', b't', //
            93, 2, 0, 9, // a second 93 is ignored
            255,
        ];
        let id = ClientIdentity::from_options(Options::new(options));
        assert_eq!(id.arch, Some(7));
        assert_eq!(
            id.undi,
            Some(UndiVersion {
                interface_type: 1,
                major: 3,
                minor: 0
            })
        );
        assert_eq!(id.machine_id.map(|m| m[16]), Some(16));
        assert!(id.vendor_class_starts_with(b"PXEClient"));
        assert!(!id.is_ipxe());
        assert_eq!(id.boot_item(), None);
    }

    #[test]
    fn arch_and_machine_id_edge_cases() {
        assert_eq!(client_arch(&[]), None);
        assert_eq!(client_arch(&[7]), None);
        assert_eq!(client_arch(&[0, 7, 0, 9]), Some(7));
        assert!(machine_id(&[0; 16]).is_none());
        assert!(machine_id(&[1; 17]).is_none());
        assert!(machine_id(&[0; 17]).is_some());
    }

    #[test]
    fn recognises_ipxe_both_ways() {
        assert!(user_class_contains(b"iPXE", IPXE_USER_CLASS));
        assert!(user_class_contains(b"\x04iPXE", IPXE_USER_CLASS));
        assert!(user_class_contains(b"\x03abc\x04iPXE", IPXE_USER_CLASS));
        assert!(!user_class_contains(b"\x04iPXEx", IPXE_USER_CLASS));
        assert!(!user_class_contains(b"gPXE", IPXE_USER_CLASS));
        assert_eq!(UserClasses::new(b"iPXE").count(), 0);
        assert_eq!(UserClasses::new(b"\x00").count(), 0);

        let id = ClientIdentity::from_options(Options::new(&[175, 3, 177, 5, 1]));
        assert!(id.is_ipxe());
    }
}

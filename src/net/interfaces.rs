//! The interface table and how threads share it.
//!
//! [`InterfaceTable`] is plain data built from rtnetlink events
//! ([`crate::wire::netlink::Event`]): sans-IO, so it is tested and fuzzed
//! without a socket. [`Interfaces`] publishes a new table when one changes
//! (rare: an address added, a link renamed); each reader holds a [`View`],
//! which checks one atomic generation number per look and takes the new
//! table only when it moved, so the packet paths never lock, allocate or
//! ask the kernel.

use crate::published::{Published, Reader};
use std::net::Ipv4Addr;

use crate::wire::netlink::{Addr, Event, Link, Name};

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    pub name: Name,
    /// 0 when the kernel has not said.
    pub mtu: u32,
    /// IPv4 addresses with their prefix lengths, oldest (primary) first.
    pub addrs: Vec<(Ipv4Addr, u8)>,
}

/// Every interface, by index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceTable {
    /// Sorted by index.
    interfaces: Vec<Interface>,
}

/// The netmask of a prefix length (0 to 32).
pub fn prefix_mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0)
}

impl InterfaceTable {
    pub fn new() -> InterfaceTable {
        InterfaceTable::default()
    }

    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    pub fn get(&self, index: u32) -> Option<&Interface> {
        self.slot(index).ok().map(|i| &self.interfaces[i])
    }

    fn slot(&self, index: u32) -> Result<usize, usize> {
        self.interfaces.binary_search_by_key(&index, |i| i.index)
    }

    /// The interface `index`, made if it is new (an address may be
    /// reported before its link).
    fn entry(&mut self, index: u32) -> &mut Interface {
        let at = match self.slot(index) {
            Ok(at) => at,
            Err(at) => {
                self.interfaces.insert(
                    at,
                    Interface {
                        index,
                        name: Name::default(),
                        mtu: 0,
                        addrs: Vec::new(),
                    },
                );
                at
            }
        };
        &mut self.interfaces[at]
    }

    /// Applies one event; says whether the table changed.
    pub fn apply(&mut self, event: &Event) -> bool {
        match *event {
            Event::NewLink(Link { index, name, mtu }) => {
                let entry = self.entry(index);
                let before = (entry.name, entry.mtu);
                if let Some(name) = name {
                    entry.name = name;
                }
                if let Some(mtu) = mtu {
                    entry.mtu = mtu;
                }
                // A new entry is a change even with nothing set.
                before != (entry.name, entry.mtu) || before == (Name::default(), 0)
            }
            Event::DelLink(index) => match self.slot(index) {
                Ok(at) => {
                    self.interfaces.remove(at);
                    true
                }
                Err(_) => false,
            },
            Event::NewAddr(Addr {
                index,
                address,
                prefix_len,
            }) => {
                let entry = self.entry(index);
                match entry.addrs.iter_mut().find(|(a, _)| *a == address) {
                    Some(slot) if slot.1 == prefix_len => false,
                    Some(slot) => {
                        slot.1 = prefix_len;
                        true
                    }
                    None => {
                        entry.addrs.push((address, prefix_len));
                        true
                    }
                }
            }
            Event::DelAddr(Addr { index, address, .. }) => match self.slot(index) {
                Ok(at) => {
                    let addrs = &mut self.interfaces[at].addrs;
                    let before = addrs.len();
                    addrs.retain(|(a, _)| *a != address);
                    addrs.len() != before
                }
                Err(_) => false,
            },
            Event::Done | Event::Other => false,
        }
    }

    /// The MTU of interface `index`, if known.
    pub fn mtu(&self, index: u32) -> Option<u32> {
        self.get(index).map(|i| i.mtu).filter(|&m| m > 0)
    }

    /// The address of interface `index` that lies in one of `subnets`
    /// (network, mask; without a mask, the address's own prefix), trying
    /// `preferred` first (the address the kernel would answer from).
    /// `None` when the interface has no such address.
    pub fn address_in(
        &self,
        index: u32,
        preferred: Ipv4Addr,
        subnets: &[(Ipv4Addr, Option<Ipv4Addr>)],
    ) -> Option<Ipv4Addr> {
        let interface = self.get(index)?;
        let inside = |&(address, prefix_len): &(Ipv4Addr, u8)| {
            subnets.iter().any(|&(network, mask)| {
                let mask = mask.map_or_else(|| prefix_mask(prefix_len), u32::from);
                u32::from(network) & mask == u32::from(address) & mask
            })
        };
        let addrs = &interface.addrs;
        addrs
            .iter()
            .filter(|(a, _)| *a == preferred)
            .chain(addrs.iter().filter(|(a, _)| *a != preferred))
            .find(|entry| inside(entry))
            .map(|&(address, _)| address)
    }
}

/// The current table, for every thread that answers packets.
pub type Interfaces = Published<InterfaceTable>;

/// One thread's handle on the table.
pub type View = Reader<InterfaceTable>;

impl View {
    /// The current table: one atomic load, and a reference count taken
    /// under the read lock only when the table changed since last time.
    pub fn table(&mut self) -> &InterfaceTable {
        self.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, mtu: u32) -> Event {
        Event::NewLink(Link {
            index,
            name: Some(Name::new(name.as_bytes())),
            mtu: Some(mtu),
        })
    }

    fn addr(index: u32, a: [u8; 4], prefix_len: u8) -> Addr {
        Addr {
            index,
            address: Ipv4Addr::from(a),
            prefix_len,
        }
    }

    #[test]
    fn events_build_and_change_the_table() {
        let mut t = InterfaceTable::new();
        assert!(t.apply(&link(2, "eth0", 1500)));
        assert!(!t.apply(&link(2, "eth0", 1500)), "no change");
        assert!(t.apply(&Event::NewAddr(addr(2, [192, 168, 1, 1], 24))));
        assert!(!t.apply(&Event::NewAddr(addr(2, [192, 168, 1, 1], 24))));
        assert_eq!(t.mtu(2), Some(1500));
        assert_eq!(t.mtu(3), None);
        // An address reported before its link makes the entry.
        assert!(t.apply(&Event::NewAddr(addr(5, [10, 0, 0, 1], 8))));
        assert_eq!(t.get(5).map(|i| i.addrs.len()), Some(1));
        assert!(t.apply(&link(2, "eth0", 9000)));
        assert_eq!(t.mtu(2), Some(9000));
        assert!(t.apply(&Event::DelAddr(addr(2, [192, 168, 1, 1], 24))));
        assert!(t.get(2).unwrap().addrs.is_empty());
        assert!(t.apply(&Event::DelLink(2)));
        assert!(!t.apply(&Event::DelLink(2)));
        assert_eq!(
            t.interfaces().iter().map(|i| i.index).collect::<Vec<_>>(),
            [5]
        );
    }

    #[test]
    fn the_subnet_check_looks_at_every_address_of_the_interface() {
        let mut t = InterfaceTable::new();
        t.apply(&link(3, "veth0", 1500));
        t.apply(&Event::NewAddr(addr(3, [192, 168, 50, 1], 24)));
        let ten = [(Ipv4Addr::new(10, 99, 0, 0), None)];
        let primary = Ipv4Addr::new(192, 168, 50, 1);
        assert_eq!(t.address_in(3, primary, &ten), None);
        t.apply(&Event::NewAddr(addr(3, [10, 99, 0, 1], 24)));
        assert_eq!(
            t.address_in(3, primary, &ten),
            Some(Ipv4Addr::new(10, 99, 0, 1))
        );
        // A mask given in the configuration wins over the prefix.
        let wide = [(
            Ipv4Addr::new(10, 0, 0, 0),
            Some(Ipv4Addr::new(255, 0, 0, 0)),
        )];
        assert_eq!(
            t.address_in(3, primary, &wide),
            Some(Ipv4Addr::new(10, 99, 0, 1))
        );
        // The address the kernel picked comes first when both match.
        let both = [(Ipv4Addr::new(0, 0, 0, 0), Some(Ipv4Addr::new(0, 0, 0, 0)))];
        assert_eq!(t.address_in(3, primary, &both), Some(primary));
        assert_eq!(t.address_in(4, primary, &both), None, "unknown interface");
        assert_eq!(prefix_mask(0), 0);
        assert_eq!(prefix_mask(24), 0xffff_ff00);
        assert_eq!(prefix_mask(32), u32::MAX);
    }

    #[test]
    fn views_see_a_published_table() {
        let shared = std::sync::Arc::new(Interfaces::new(InterfaceTable::new()));
        let mut view = shared.reader();
        assert!(view.table().interfaces().is_empty());
        let mut t = InterfaceTable::new();
        t.apply(&link(1, "lo", 65536));
        shared.publish(t);
        assert_eq!(view.table().mtu(1), Some(65536));
    }
}

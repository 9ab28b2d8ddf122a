//! rtnetlink datagrams: parsing never panics, and whatever events come out
//! keep the interface table consistent (sorted by index, no duplicate
//! address on an interface, lookups answer).
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use rackboot::net::InterfaceTable;
use rackboot::wire::netlink;

fuzz_target!(|data: &[u8]| {
    let mut table = InterfaceTable::new();
    for event in netlink::messages(data) {
        let Ok(event) = event else { break };
        table.apply(&event);
    }
    let interfaces = table.interfaces();
    assert!(interfaces.windows(2).all(|w| w[0].index < w[1].index));
    for i in interfaces {
        let mut addrs: Vec<_> = i.addrs.iter().map(|(a, _)| *a).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), i.addrs.len());
        assert!(i.addrs.iter().all(|&(_, p)| p <= 32));
        let any = [(Ipv4Addr::UNSPECIFIED, Some(Ipv4Addr::UNSPECIFIED))];
        // Every address matches `any`: the preferred one comes first if the
        // interface has it, else the oldest.
        let preferred = Ipv4Addr::UNSPECIFIED;
        let want = if i.addrs.iter().any(|(a, _)| *a == preferred) {
            Some(preferred)
        } else {
            i.addrs.first().map(|(a, _)| *a)
        };
        assert_eq!(table.address_in(i.index, preferred, &any), want);
        let _ = table.mtu(i.index);
    }
});

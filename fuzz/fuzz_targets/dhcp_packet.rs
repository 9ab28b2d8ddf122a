//! Round trip: a parsed BOOTP/DHCP packet rebuilt with the reply builder
//! parses back to the same header and the same options.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot::wire::dhcp::{Packet, ReplyBuilder};
use zerocopy::IntoBytes;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        return;
    };
    let options: Vec<(u8, &[u8])> = packet.options().collect();
    let mut buf = vec![0u8; 240 + options.iter().map(|(_, d)| d.len() + 2).sum::<usize>() + 64];
    let mut b = ReplyBuilder::new(&mut buf).unwrap();
    *b.header_mut() = *packet.header();
    for (code, value) in &options {
        b.push_option(*code, value).unwrap();
    }
    let len = b.finish().unwrap();
    let again = Packet::new_checked(&buf[..len]).expect("rebuilt packet parses");
    assert_eq!(again.header().as_bytes(), packet.header().as_bytes());
    let again_options: Vec<(u8, &[u8])> = again.options().collect();
    assert_eq!(again_options, options);
});

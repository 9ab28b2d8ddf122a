//! Negotiation never grants more than the client asked or the server
//! allows, and its OACK parses back to the same values.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rackboot::tftp::{Limits, Negotiated};
use rackboot::wire::tftp::{Options, Packet, parse_decimal};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    options: &'a [u8],
    max_blksize: u16,
    mtu_blksize: Option<u16>,
    max_window: u16,
    switches: [bool; 4],
    file_size: u64,
}

fuzz_target!(|input: Input<'_>| {
    let Ok(options) = Options::parse(input.options) else {
        return;
    };
    let limits = Limits {
        max_blksize: input.max_blksize,
        mtu_blksize: input.mtu_blksize,
        max_window: input.max_window,
        blksize: input.switches[0],
        tsize: input.switches[1],
        timeout: input.switches[2],
        windowsize: input.switches[3],
    };
    let n = Negotiated::for_read(&options, &limits, input.file_size);
    assert!(n.blksize >= 8 || n.blksize == 512);
    assert!(n.window >= 1);
    let mut buf = [0u8; 256];
    let len = n
        .emit_oack(&mut buf)
        .expect("an OACK always fits 256 bytes");
    let Ok(Packet::Oack(oack)) = Packet::parse(&buf[..len]) else {
        panic!("OACK does not parse")
    };
    for (name, value) in oack.iter() {
        let granted = parse_decimal(value).expect("numeric OACK value");
        let asked = options.get(std::str::from_utf8(name).unwrap());
        match name {
            b"blksize" => {
                assert!(granted <= parse_decimal(asked.unwrap()).unwrap());
                assert!(granted <= u64::from(limits.max_blksize.max(8)));
                if let Some(m) = limits.mtu_blksize {
                    assert!(granted <= u64::from(m.max(8)));
                }
            }
            b"windowsize" => {
                assert!(granted <= parse_decimal(asked.unwrap()).unwrap());
                assert!(granted <= u64::from(limits.max_window.max(1)));
            }
            b"tsize" => assert_eq!(granted, input.file_size),
            b"timeout" => assert!((1..=255).contains(&granted)),
            other => panic!("unasked option {other:?} in OACK"),
        }
    }
});

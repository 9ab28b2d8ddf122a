//! Round trip: any bytes that parse as a TFTP packet emit back to bytes
//! that parse to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot::wire::tftp::{self, Opcode, Packet, Writer};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::parse(data) else {
        return;
    };
    let mut buf = vec![0u8; data.len() + 16];
    let mut w = Writer::new(&mut buf);
    match packet {
        Packet::Rrq(r) | Packet::Wrq(r) => {
            let op = if matches!(packet, Packet::Rrq(_)) {
                Opcode::Rrq
            } else {
                Opcode::Wrq
            };
            w.put_u16(op as u16).unwrap();
            w.put_str(r.filename).unwrap();
            w.put_str(match r.mode {
                tftp::Mode::Octet => b"octet",
                tftp::Mode::Netascii => b"netascii",
            })
            .unwrap();
            for (name, value) in r.options.iter() {
                w.put_str(name).unwrap();
                w.put_str(value).unwrap();
            }
        }
        Packet::Data { block, payload } => {
            w.put(&tftp::data_header(block)).unwrap();
            w.put(payload).unwrap();
        }
        Packet::Ack { block } => {
            w.put_u16(Opcode::Ack as u16).unwrap();
            w.put_u16(block).unwrap();
        }
        Packet::Error { code, message } => {
            w.put_u16(Opcode::Error as u16).unwrap();
            w.put_u16(code).unwrap();
            w.put_str(message).unwrap();
        }
        Packet::Oack(options) => {
            w.put_u16(Opcode::Oack as u16).unwrap();
            for (name, value) in options.iter() {
                w.put_str(name).unwrap();
                w.put_str(value).unwrap();
            }
        }
    }
    let len = w.len();
    let again = Packet::parse(&buf[..len]).expect("emitted packet must parse");
    // Mode spelling may differ (case); compare everything else.
    match (packet, again) {
        (Packet::Rrq(a), Packet::Rrq(b)) | (Packet::Wrq(a), Packet::Wrq(b)) => {
            assert_eq!(a.filename, b.filename);
            assert_eq!(a.mode, b.mode);
            assert!(a.options.iter().eq(b.options.iter()));
        }
        (Packet::Oack(a), Packet::Oack(b)) => assert!(a.iter().eq(b.iter())),
        (a, b) => assert_eq!(a, b),
    }
});

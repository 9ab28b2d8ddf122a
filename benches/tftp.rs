//! TFTP hot paths: packet parse and emit, option negotiation, and one
//! transfer step (ACK in, next window out) at windows 1, 16 and 64.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rackboot::tftp::{Limits, Negotiated, ReadTransfer, Timing, Transmit};
use rackboot::wire::tftp::{self, ErrorCode, Opcode, Options, Packet};

fn rrq() -> Vec<u8> {
    let mut buf = [0u8; 128];
    let n = tftp::emit_request(
        &mut buf,
        Opcode::Rrq,
        b"pxelinux.cfg/01-52-54-00-12-34-56",
        b"octet",
        &[
            (b"tsize", b"0"),
            (b"blksize", b"1468"),
            (b"windowsize", b"16"),
        ],
    )
    .unwrap();
    buf[..n].to_vec()
}

fn wire(c: &mut Criterion) {
    let request = rrq();
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse RRQ with 3 options", |b| {
        b.iter(|| Packet::parse(black_box(&request)))
    });
    g.bench_function("parse ACK", |b| {
        b.iter(|| Packet::parse(black_box(&[0, 4, 0x12, 0x34])))
    });
    let data = tftp::data_header(7);
    g.bench_function("parse DATA header", |b| {
        b.iter(|| Packet::parse(black_box(&data)))
    });
    let mut out = [0u8; 128];
    g.bench_function("emit DATA header", |b| {
        b.iter(|| tftp::data_header(black_box(4242)))
    });
    g.bench_function("emit ACK", |b| {
        b.iter(|| tftp::emit_ack(black_box(&mut out), 9))
    });
    g.bench_function("emit ERROR", |b| {
        b.iter(|| {
            tftp::emit_error(
                black_box(&mut out),
                ErrorCode::FileNotFound,
                "File not found",
            )
        })
    });
    g.finish();
}

fn negotiation(c: &mut Criterion) {
    let request = rrq();
    let Ok(Packet::Rrq(req)) = Packet::parse(&request) else {
        unreachable!()
    };
    let limits = Limits {
        mtu_blksize: Some(1468),
        ..Limits::default()
    };
    let mut out = [0u8; 128];
    c.bench_function("negotiate + emit OACK", |b| {
        b.iter(|| {
            let n = Negotiated::for_read(black_box(&req.options), &limits, 42_000);
            n.emit_oack(&mut out)
        })
    });
}

fn transfer_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("transfer step (ACK in, window out)");
    for window in [1u16, 16, 64] {
        let req = format!("blksize\01468\0windowsize\0{window}\0");
        let n = Negotiated::for_read(
            &Options::parse(req.as_bytes()).unwrap(),
            &Limits::default(),
            0,
        );
        g.throughput(Throughput::Elements(u64::from(window)));
        g.bench_function(format!("window {window}"), |b| {
            let now = Instant::now();
            // A file long enough never to end during the measurement.
            let mut t = ReadTransfer::new(u64::MAX / 2, &n, Timing::default(), now);
            let _ = t.poll_transmit(now); // OACK
            t.on_ack(0, now);
            let mut last = 0u16;
            b.iter(|| {
                while let Some(Transmit::Data { block, .. }) = t.poll_transmit(now) {
                    last = black_box(block);
                }
                t.on_ack(last, now);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, wire, negotiation, transfer_step);
criterion_main!(benches);

//! Path resolution: normalising a requested name, and the full open of a
//! cached file (openat2 beneath the root, fstat, cache lookup).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rackboot::files::resolve::normalise;
use rackboot::files::{FileCache, Root, RootOptions};

fn resolve(c: &mut Criterion) {
    c.bench_function("normalise pxelinux.cfg name", |b| {
        b.iter(|| normalise(black_box(b"/pxelinux.cfg\\01-52-54-00-12-34-56")))
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pxelinux.cfg")).unwrap();
    std::fs::write(
        dir.path().join("pxelinux.cfg/default"),
        b"DEFAULT menu.c32\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("pxelinux.0"), vec![7u8; 42_000]).unwrap();
    let cache = FileCache::new(Root::open(dir.path(), RootOptions::default()).unwrap(), 1);
    let _keep = cache.open(b"pxelinux.0").unwrap();
    c.bench_function("open cached file", |b| {
        b.iter(|| cache.open(black_box(b"pxelinux.0")))
    });
    c.bench_function("open missing file (pxelinux.cfg miss)", |b| {
        b.iter(|| cache.open(black_box(b"pxelinux.cfg/C0A80A64")).err())
    });
}

criterion_group!(benches, resolve);
criterion_main!(benches);

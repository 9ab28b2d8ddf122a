//! The GRUB configuration parser on any bytes: records with real line
//! numbers and non-empty paths, never a panic; and the path resolution
//! after it never leaves the root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot::check::tree::{Server, Target};

fuzz_target!(|data: &[u8]| {
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    let server = Server::default();
    for r in rackboot::check::grub::parse(data) {
        assert!((1..=lines).contains(&r.line), "line {} of {lines}", r.line);
        assert!(!r.path.is_empty());
        if let Target::Local(path) = rackboot::check::grub::resolve(&r.path, &server) {
            assert!(!path.starts_with('/'), "{path}");
            assert!(
                path.is_empty()
                    || path
                        .split('/')
                        .all(|p| !p.is_empty() && p != "." && p != ".."),
                "{path}"
            );
        }
    }
});

//! Remap rules and per-client roots only rewrite a name: whatever rule and
//! request, the file served lies under the root (the secret beside it is
//! never served, and no served name climbs out). Input: a rule's pattern,
//! its template and the requested name, separated by NUL bytes.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rackboot::files::{FileCache, Naming, RemapRule, Root, RootOptions, UniqueRoot};

/// A root with a few files and a directory for the client, beside a
/// secret that must never be opened.
fn fixture() -> &'static PathBuf {
    static FIXTURE: OnceLock<PathBuf> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("rackboot-fuzz-remap-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("10.0.0.7/sub")).unwrap();
        std::fs::write(root.join("a"), "a").unwrap();
        std::fs::write(root.join("10.0.0.7/sub/b"), "b").unwrap();
        std::fs::write(base.join("secret"), SECRET).unwrap();
        root
    })
}

const SECRET: &[u8] = b"the secret beside the root";

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let (Some(pattern), Some(replace), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let (Ok(pattern), Ok(replace)) = (std::str::from_utf8(pattern), std::str::from_utf8(replace)) else {
        return;
    };
    let rule = RemapRule {
        pattern: pattern.to_owned(),
        replace: replace.to_owned(),
        last: false,
    };
    let Ok(naming) = Naming::new(&[rule.clone(), rule], Some(UniqueRoot::Ip)) else {
        return;
    };
    let root = Root::open(fixture(), RootOptions::default()).unwrap();
    let cache = FileCache::new(root, 1).with_naming(naming);
    let client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
    if let Ok(file) = cache.open_for(name, client) {
        assert_ne!(file.slice(0, file.len() as usize), SECRET, "the secret was served");
        assert!(!file.name().split('/').any(|part| part == ".."), "{}", file.name());
    }
});

//! A `--hosts-dir` file on any bytes, in either form (rackboot's TOML or
//! dnsmasq's dhcp-host lines): rules or errors that each name file:line
//! (or the file), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot::hosts_dir::parse;

fuzz_target!(|data: &[u8]| {
    let origin = std::path::Path::new("/hosts/m1");
    match parse(data, origin) {
        Ok(rules) => {
            for rule in &rules {
                assert!(rule.place.starts_with("/hosts/m1:"), "{rule:?}");
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(e.starts_with("/hosts/m1"), "error without its file: {e}");
            }
        }
    }
});

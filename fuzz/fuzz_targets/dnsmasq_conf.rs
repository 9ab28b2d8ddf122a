//! The dnsmasq.conf importer on any bytes: an import or an error naming a
//! line, never a panic. Includes point nowhere (a fixed, empty directory).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot::dnsmasq_conf::import_bytes;

fuzz_target!(|data: &[u8]| {
    let origin = std::path::Path::new("/nonexistent-rackboot-fuzz/dnsmasq.conf");
    if let Ok(imported) = import_bytes(data, origin) {
        for w in &imported.warnings {
            assert!(w.line >= 1, "warning without a line: {w}");
        }
    }
});

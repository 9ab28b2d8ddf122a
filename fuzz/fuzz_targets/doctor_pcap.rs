//! `rackboot doctor --pcap`: arbitrary bytes as a pcap file, and as one
//! Ethernet frame, are followed and judged without a panic, and the
//! verdicts format.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rackboot::doctor::{self, Follow};

fuzz_target!(|data: &[u8]| {
    if let Ok((follow, _damaged)) = doctor::follow_pcap(data, None) {
        for verdict in doctor::verdicts(&follow, None) {
            let _ = verdict.to_string();
        }
    }
    let mut follow = Follow::new(None);
    follow.frame(Duration::from_secs(1), data);
    follow.frame(Duration::from_secs(9), data);
    for verdict in doctor::verdicts(&follow, None) {
        let _ = verdict.to_string();
    }
});

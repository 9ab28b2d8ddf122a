//! Any Range header against any file length: never a panic, and a part is
//! always inside the file and non-empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot::http::range::{Resolved, parse, resolve};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let len = u64::from_le_bytes(data[..8].try_into().unwrap()) >> (data[0] % 64);
    match resolve(parse(&data[8..]), len) {
        Resolved::Part { start, len: part } => {
            assert!(part > 0);
            assert!(start.checked_add(part).is_some_and(|end| end <= len));
        }
        Resolved::Whole | Resolved::Unsatisfiable => {}
    }
});

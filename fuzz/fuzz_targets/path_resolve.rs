//! Name normalisation never yields a path that could leave the root: no
//! `..` component, nothing absolute, no NUL or control characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot::files::resolve::normalise;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = normalise(data) else { return };
    assert!(!path.starts_with('/'));
    assert!(!path.contains('\\'));
    assert!(
        path.split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
    );
    assert!(!path.bytes().any(|b| b == 0 || b.is_ascii_control()));
});

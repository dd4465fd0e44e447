//! Arbitrary bytes into the codec's decoder: it never panics, and whatever it accepts is
//! canonical (encoding the decoded value gives back the very same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use warp_cache::codec::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = decode(data) {
        let mut again = Vec::with_capacity(data.len());
        encode(&value, &mut again);
        assert_eq!(again, data, "decoded {value:?} re-encodes differently");
    }
});

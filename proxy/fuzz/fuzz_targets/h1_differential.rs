//! Arbitrary bytes to the HTTP/1 codec and to hyper's HTTP/1 server: the codec must take
//! the same requests as hyper, or refuse one by a rule stricter than hyper's
//! (`understudy_proxy::h1::differential::check`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Err(difference) = understudy_proxy::h1::differential::check(bytes) {
        panic!("{difference}");
    }
});

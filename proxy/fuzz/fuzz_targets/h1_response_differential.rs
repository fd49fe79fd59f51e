//! Arbitrary bytes as the answer to a request, to the HTTP/1 codec and to hyper's HTTP/1
//! client: the codec must frame the response as hyper does, or refuse it by a rule stricter
//! than hyper's (`understudy_proxy::h1::differential::check_response`). The first byte picks
//! the request's method (`response_input`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy_proxy::h1::differential::{check_response, response_input};

fuzz_target!(|bytes: &[u8]| {
    let Some((method, response)) = response_input(bytes) else {
        return;
    };
    if let Err(difference) = check_response(response, &method) {
        panic!("{difference}");
    }
});

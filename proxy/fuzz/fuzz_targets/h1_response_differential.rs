//! Arbitrary bytes as the answer to a request, to the HTTP/1 codec and to hyper's HTTP/1
//! client: the codec must frame the response as hyper does, or refuse it by a rule stricter
//! than hyper's (`understudy_proxy::h1::differential::check_response`). The first byte picks
//! the request's method.

#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some((&pick, response)) = bytes.split_first() else {
        return;
    };
    let method = match pick % 3 {
        0 => Method::GET,
        1 => Method::HEAD,
        _ => Method::POST,
    };
    if let Err(difference) = understudy_proxy::h1::differential::check_response(response, &method) {
        panic!("{difference}");
    }
});

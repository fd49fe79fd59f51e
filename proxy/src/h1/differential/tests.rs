use proptest::prelude::*;

use http::Method;

use super::{check, check_response, codec_response, codec_view, response_input};

// === the byte streams ===

fn line_end() -> impl Strategy<Value = &'static str> {
    prop_oneof![9 => Just("\r\n"), 1 => Just("\n")]
}

fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Host: example".to_string()),
        Just("X-A: 1".to_string()),
        Just("x-a: two, three".to_string()),
        Just("Accept: */*".to_string()),
        Just("Connection: close".to_string()),
        Just("Connection: keep-alive".to_string()),
        // An upgrade: the engine reads no request after one.
        Just("Connection: upgrade".to_string()),
        Just("Upgrade: websocket".to_string()),
        // Not an upgrade to the engine: served over HTTP/1.1, what follows read on.
        Just("Upgrade: h2c".to_string()),
        Just("X-Tab: a\tb".to_string()),
        Just("X-Obs: caf\u{e9}".to_string()),
        Just("X-Empty:".to_string()),
        Just("A : b".to_string()),
        Just(" folded".to_string()),
        Just("Bad Name: x".to_string()),
        // The sidecars' own: the engine reads them off the head, apart from the map.
        Just("X-Understudy-For: pod-a".to_string()),
        Just("x-understudy-for: pod-b".to_string()),
        Just("X-Understudy-Hops: 1".to_string()),
        Just("X-UNDERSTUDY-HOLD-MS: 250".to_string()),
        Just("X-Understudy-Leader: forged".to_string()),
        Just("X-Understudy-: x".to_string()),
        Just("X-Understudy-For: caf\u{e9}".to_string()),
        Just("X-Forwarded-For: 198.18.0.9".to_string()),
        Just("Via: 1.1 other".to_string()),
        prop::sample::select(vec![
            "0", "1", "3", "+3", "3, 3", "3,4", " 3 ", "03", "x", ""
        ])
        .prop_map(|v| format!("Content-Length: {v}")),
        prop::sample::select(vec![
            "chunked",
            "Chunked",
            "gzip, chunked",
            "chunked, gzip",
            "chunked, chunked",
            "identity",
            "chunked,"
        ])
        .prop_map(|v| format!("Transfer-Encoding: {v}")),
    ]
}

fn chunk() -> impl Strategy<Value = String> {
    (
        1usize..12,
        prop::sample::select(vec![
            "",
            ";a",
            ";a=b",
            ";a=\"q r\"",
            " ;x",
            " ",
            "\t",
            ";\u{1}",
        ]),
        any::<bool>(),
        line_end(),
    )
        .prop_map(|(n, ext, upper, end)| {
            let size = if upper {
                format!("{n:X}")
            } else {
                format!("{n:x}")
            };
            format!("{size}{ext}{end}{}\r\n", "d".repeat(n))
        })
}

/// A chunked body: chunks, the last chunk, maybe a trailer, the empty line.
fn chunked_body() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(chunk(), 0..3),
        prop::sample::select(vec!["", "x-t: 1\r\n", "x-t 1\r\n"]),
    )
        .prop_map(|(chunks, trailer)| format!("{}0\r\n{trailer}\r\n", chunks.concat()))
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![
            "GET", "POST", "PUT", "get", "G@T", "DELETE", "CONNECT",
        ]),
        prop::sample::select(vec![
            "/",
            "/a?b=c",
            "*",
            "http://h/p",
            "/a b",
            "/%7e",
            "db:5432",
        ]),
        prop::sample::select(vec![
            "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/1.2", "HTTP/2.0",
        ]),
        prop::collection::vec((header(), line_end()), 0..5),
        prop_oneof![
            Just(None),
            "[a-z]{0,6}".prop_map(Some),
            chunked_body().prop_map(Some)
        ],
        line_end(),
        any::<bool>(),
    )
        .prop_map(
            |(method, target, version, headers, body, end, empty_first)| {
                let mut s = String::new();
                if empty_first {
                    s.push_str("\r\n");
                }
                s.push_str(&format!("{method} {target} {version}{end}"));
                for (h, e) in headers {
                    s.push_str(&h);
                    s.push_str(e);
                }
                s.push_str("\r\n");
                if let Some(body) = body {
                    s.push_str(&body);
                }
                s.into_bytes()
            },
        )
}

/// Requests in a row, with at most one byte changed somewhere.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(request(), 1..4),
        prop::option::weighted(
            0.3,
            (
                any::<prop::sample::Index>(),
                prop::sample::select(b"\r\n :\0a,;\t\x80".to_vec()),
                any::<bool>(),
            ),
        ),
    )
        .prop_map(|(requests, change)| {
            let mut bytes = requests.concat();
            if let Some((at, byte, insert)) = change {
                let at = at.index(bytes.len());
                if insert {
                    bytes.insert(at, byte);
                } else {
                    bytes[at] = byte;
                }
            }
            bytes
        })
}

fn status_line() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "HTTP/1.1 200 OK",
        "HTTP/1.1 200 OK",
        "HTTP/1.0 200 OK",
        "HTTP/1.1 204 No Content",
        "HTTP/1.1 304 Not Modified",
        "HTTP/1.1 404 Not Found",
        "HTTP/1.1 101 Switching Protocols",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK",
        "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 500 Oops",
        "HTTP/1.1 999 Odd",
        "HTTP/1.1 20 Short",
        "HTTP/2 200",
        "HTTP/1.1 200",
    ])
}

/// A response: status line, headers, maybe a body (its framing may not match the headers).
fn response() -> impl Strategy<Value = Vec<u8>> {
    (
        status_line(),
        prop::collection::vec((header(), line_end()), 0..5),
        prop_oneof![Just(String::new()), "[a-z]{0,6}", chunked_body()],
        prop::option::weighted(
            0.3,
            (
                any::<prop::sample::Index>(),
                prop::sample::select(b"\r\n :\0a,;\t\x80".to_vec()),
            ),
        ),
    )
        .prop_map(|(status, headers, body, change)| {
            let mut s = format!("{status}\r\n");
            for (h, e) in headers {
                s.push_str(&h);
                s.push_str(e);
            }
            s.push_str("\r\n");
            s.push_str(&body);
            let mut bytes = s.into_bytes();
            if let Some((at, byte)) = change {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            bytes
        })
}

proptest! {
    #[test]
    fn responses_are_framed_as_hyper_frames_them_or_refused_by_a_stricter_rule(
        bytes in response(),
        method in prop::sample::select(vec![Method::GET, Method::HEAD, Method::POST]),
    ) {
        if let Err(difference) = check_response(&bytes, &method) {
            prop_assert!(false, "{}", difference);
        }
    }

    #[test]
    fn the_codec_takes_what_hyper_takes_or_refuses_it_by_a_stricter_rule(bytes in stream()) {
        if let Err(difference) = check(&bytes) {
            prop_assert!(false, "{}", difference);
        }
    }
}

#[test]
fn the_differences_the_property_test_found_stay_mended() {
    for stream in [
        // A whole request before the client half-closes.
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        // A bare LF ending the head: hyper takes it, the codec refuses it.
        b"GET / HTTP/1.1\n\n\r\n",
        // hyper refuses a Content-Length list; so must the codec.
        b"GET / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        // hyper passes repeated equal lines on as one; so must the codec.
        b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
    ] {
        check(stream).unwrap();
    }
}

#[test]
fn responses_the_property_test_shrank_to_stay_framed_alike() {
    // Close-delimited and empty (the harness must send it only once asked).
    check_response(b"HTTP/1.1 200 OK\r\n\r\n", &Method::GET).unwrap();
    // A 304 has no body, whatever follows it on the connection.
    check_response(
        b"HTTP/1.1 304 Not Modified\r\naontent-Length: 0\r\n\r\n0\r\n\r\n",
        &Method::GET,
    )
    .unwrap();
}

/// The fuzz targets' seeds (`proxy/fuzz/seeds/<target>`): what `cargo fuzz run` starts from
/// with the commands in docs/security.md, by name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = format!("{}/fuzz/seeds/{target}", env!("CARGO_MANIFEST_DIR"));
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    seeds
}

/// Each seed is one rule of the module docs (most of them an ambiguity the codec refuses):
/// each passes the check, so a change that breaks one shows here, and a short fuzz run
/// starts from every rule rather than from nothing.
#[test]
fn the_fuzz_targets_seeds_pass_the_check_and_hold_both_taken_and_refused_messages() {
    let requests = seeds("h1_differential");
    let mut refused = 0;
    for (name, bytes) in &requests {
        check(bytes).unwrap_or_else(|d| panic!("seed {name}: {d}"));
        refused += usize::from(codec_view(bytes).refusal.is_some());
    }
    // (12 of 26 now: every refusal rule, and more messages taken whole.)
    let taken = requests.len() - refused;
    assert!(
        refused >= 10 && taken >= 10,
        "{refused} request seeds refused, {taken} taken"
    );
    let responses = seeds("h1_response_differential");
    let mut refused = 0;
    for (name, bytes) in &responses {
        let (method, response) = response_input(bytes).expect("a seed is not empty");
        check_response(response, &method).unwrap_or_else(|d| panic!("seed {name}: {d}"));
        refused += usize::from(codec_response(response, &method).is_err());
    }
    // (6 of 16 now.)
    let taken = responses.len() - refused;
    assert!(
        refused >= 5 && taken >= 8,
        "{refused} response seeds refused, {taken} taken"
    );
}

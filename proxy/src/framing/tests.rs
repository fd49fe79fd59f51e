use proptest::prelude::*;

use super::*;

/// Feeds `stream` cut at `cuts` (offsets, in any order); where it was flagged, in `stream`.
fn scan_cut(stream: &[u8], cuts: &[usize]) -> (Framing, Option<usize>) {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
    cuts.sort_unstable();
    cuts.push(stream.len());
    let mut framing = Framing::new();
    let mut from = 0;
    for to in cuts {
        if let Some(at) = framing.scan(&stream[from..to]) {
            return (framing, Some(from + at));
        }
        from = to;
    }
    (framing, None)
}

/// Where `stream` is flagged, checked to be the same whole, cut at every byte, and byte by
/// byte.
fn flagged(stream: &[u8]) -> Option<usize> {
    let (_, whole) = scan_cut(stream, &[]);
    for cut in 0..=stream.len() {
        assert_eq!(scan_cut(stream, &[cut]).1, whole, "cut at {cut}");
    }
    let every: Vec<usize> = (0..stream.len()).collect();
    assert_eq!(scan_cut(stream, &every).1, whole, "byte by byte");
    whole
}

/// `stream` is never flagged, however cut, and leaves the scanner between requests (not
/// merely standing aside).
fn assert_followed(stream: &[u8]) {
    assert_eq!(
        flagged(stream),
        None,
        "{:?}",
        String::from_utf8_lossy(stream)
    );
    let (framing, _) = scan_cut(stream, &[]);
    assert_eq!(
        framing.state,
        State::Start,
        "{:?}",
        String::from_utf8_lossy(stream)
    );
}

/// The offset of the colon after the `n`th (from 0) occurrence of `name` in `stream`.
fn colon_of(stream: &[u8], name: &str, n: usize) -> usize {
    let text = String::from_utf8_lossy(stream).to_ascii_lowercase();
    let (at, _) = text.match_indices(name).nth(n).expect("name in stream");
    at + name.len()
}

#[test]
fn content_length_then_transfer_encoding_is_flagged_at_the_second_name() {
    let head =
        b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n";
    assert_eq!(flagged(head), Some(colon_of(head, "transfer-encoding", 0)));
}

#[test]
fn transfer_encoding_then_content_length_is_flagged_at_the_second_name() {
    let head = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nhost: a\r\nContent-Length: 30\r\n\r\n0\r\n\r\n";
    assert_eq!(flagged(head), Some(colon_of(head, "content-length", 0)));
}

#[test]
fn names_are_matched_in_any_case_and_with_any_values() {
    for head in [
        &b"POST / HTTP/1.1\r\nCONTENT-LENGTH: 1\r\nTRANSFER-ENCODING: gzip, chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\ncOnTeNt-LeNgTh: nonsense\r\ntRaNsFeR-eNcOdInG: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\ntransfer-encoding:chunked\r\ncontent-length:\r\n\r\n",
    ] {
        let second = if head
            .to_ascii_lowercase()
            .starts_with(b"post / http/1.1\r\ntransfer")
        {
            "content-length"
        } else {
            "transfer-encoding"
        };
        assert_eq!(flagged(head), Some(colon_of(head, second, 0)));
    }
}

#[test]
fn a_smuggling_head_after_valid_requests_is_flagged_there() {
    let stream = b"GET /a HTTP/1.1\r\nhost: a\r\n\r\n\
        POST /b HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello\
        POST /c HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nx-t: 1\r\n\r\n\
        POST /d HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(
        flagged(stream),
        Some(colon_of(stream, "transfer-encoding", 1))
    );
}

#[test]
fn header_like_bytes_in_bodies_are_not_headers() {
    let inner = "GET / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";
    let stream = format!(
        "POST /a HTTP/1.1\r\ncontent-length: {}\r\n\r\n{inner}\
         POST /b HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n\
         GET /c HTTP/1.1\r\n\r\n",
        inner.len(),
        inner.len()
    );
    assert_followed(stream.as_bytes());
}

#[test]
fn valid_keep_alive_streams_are_followed() {
    for stream in [
        // Content-Length bodies, repeated equal lengths, whitespace around the value.
        &b"POST /a HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc\
           PUT /b HTTP/1.1\r\ncontent-length:  2 \r\ncontent-length: 2\r\n\r\nxy\
           GET /c HTTP/1.1\r\ncontent-length: 0\r\n\r\n"[..],
        // Chunked, with extensions, whitespace after the size, trailers, upper-case hex.
        b"POST /a HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n\
           A;name=value\r\n0123456789\r\n1 \t;x\r\nz\r\n0\r\n\r\n\
           POST /b HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
           2\r\nhi\r\n0;last\r\ncontent-length: 9\r\ntransfer-encoding: x\r\n\r\n",
        // Empty lines between requests (bare LF too: the parser skips them), near-miss names.
        b"GET /a HTTP/1.1\r\nhost: a\r\ncontent-lengthy: 1\r\nx-transfer-encoding: chunked\r\n\r\n\
           \r\n\nPOST /b HTTP/1.1\r\ncontent-length: 1\r\nte: trailers\r\nupgrade-insecure-requests: 1\r\n\r\nz\
           GET /c HTTP/1.1\r\ntransfer-encodings: x\r\ncontent-length: 0\r\n\r\n",
        // HTTP/1.0 and a long method.
        b"GET / HTTP/1.0\r\n\r\nPROPFIND /x HTTP/1.1\r\ncontent-length: 1\r\n\r\n.",
    ] {
        assert_followed(stream);
    }
}

#[test]
fn upgrades_connect_and_h2_make_it_stand_aside() {
    let smuggle = "POST / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";
    for before in [
        "GET /ws HTTP/1.1\r\nhost: a\r\nUpgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        "CONNECT a:443 HTTP/1.1\r\nhost: a:443\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        let stream = format!("{before}{smuggle}");
        assert_eq!(flagged(stream.as_bytes()), None, "{before}");
        assert!(scan_cut(stream.as_bytes(), &[]).0.is_aside());
    }
}

#[test]
fn what_hyper_refuses_makes_it_stand_aside() {
    let smuggle = "POST / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";
    for before in [
        "POST / HTTP/1.1\r\ncontent-length: 5, 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello",
        "POST / HTTP/1.1\r\ncontent-length: 99999999999999999999\r\n\r\n",
        "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1;a\nx\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n11111111111111111\r\n",
        "\rGET / HTTP/1.1\r\n\r\n",
        "GET\r\n\r\n",
    ] {
        let stream = format!("{before}{smuggle}");
        assert_eq!(flagged(stream.as_bytes()), None, "{before:?}");
        assert!(scan_cut(stream.as_bytes(), &[]).0.is_aside(), "{before:?}");
    }
}

#[test]
fn a_smuggling_head_with_an_invalid_length_is_still_flagged() {
    let head = b"POST / HTTP/1.1\r\ncontent-length: 5, 6\r\ntransfer-encoding: chunked\r\n\r\n";
    assert_eq!(flagged(head), Some(colon_of(head, "transfer-encoding", 0)));
}

// === property tests ===

/// A header name with random letter case.
fn name(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    (prop::sample::select(names), any::<u64>()).prop_map(|(name, case)| {
        name.chars()
            .enumerate()
            .map(|(i, c)| {
                if case >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    })
}

fn other_header() -> impl Strategy<Value = String> {
    let names = &[
        "host",
        "accept",
        "cookie",
        "te",
        "content-type",
        "content-lengthy",
        "x-content-length",
        "transfer-encodings",
        "x-transfer-encoding",
        "upgrade-insecure-requests",
        "connection",
    ];
    (name(names), "[ -~]{0,24}").prop_map(|(n, v)| format!("{n}: {}", v.trim()))
}

#[derive(Clone, Debug)]
enum Body {
    None,
    Length(Vec<u8>),
    /// Chunks (data, extension) and trailer lines.
    Chunked(Vec<(Vec<u8>, &'static str)>, Vec<String>),
}

fn body() -> impl Strategy<Value = Body> {
    let data = prop::collection::vec(any::<u8>(), 0..48);
    let chunk = (
        prop::collection::vec(any::<u8>(), 1..48),
        prop::sample::select(&["", ";a=b", " ;ext", "\t; q=\"x;y\"", ";content-length: 1"][..]),
    );
    prop_oneof![
        Just(Body::None),
        data.prop_map(Body::Length),
        (
            prop::collection::vec(chunk, 0..4),
            prop::collection::vec(other_header(), 0..3)
        )
            .prop_map(|(chunks, trailers)| Body::Chunked(chunks, trailers)),
    ]
}

/// One valid request (CRLF line ends), sometimes after an empty line.
fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(&["GET", "POST", "PUT", "DELETE", "OPTIONS", "PROPFIND"][..]),
        prop::collection::vec(other_header(), 0..5),
        any::<bool>(),
        any::<bool>(),
        body(),
        name(&["content-length"]),
        name(&["transfer-encoding"]),
    )
        .prop_map(|(method, mut headers, lf_blank, blank, body, cl, te)| {
            let nl = "\r\n";
            match &body {
                Body::None => {}
                Body::Length(data) => headers.push(format!("{cl}: {}", data.len())),
                Body::Chunked(..) => headers.push(format!("{te}: chunked")),
            }
            let mut out = Vec::new();
            if blank {
                // Empty lines before a request line are skipped, CRLF or a bare LF.
                out.extend_from_slice(if lf_blank { b"\n" } else { b"\r\n" });
            }
            out.extend_from_slice(format!("{method} /p HTTP/1.1{nl}").as_bytes());
            for h in &headers {
                out.extend_from_slice(format!("{h}{nl}").as_bytes());
            }
            out.extend_from_slice(nl.as_bytes());
            match body {
                Body::None => {}
                Body::Length(data) => out.extend_from_slice(&data),
                Body::Chunked(chunks, trailers) => {
                    for (i, (data, ext)) in chunks.iter().enumerate() {
                        let size = if i % 2 == 0 {
                            format!("{:x}", data.len())
                        } else {
                            format!("{:X}", data.len())
                        };
                        out.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
                        out.extend_from_slice(data);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n");
                    for t in trailers {
                        out.extend_from_slice(format!("{t}\r\n").as_bytes());
                    }
                    out.extend_from_slice(b"\r\n");
                }
            }
            out
        })
}

/// A head with both framing headers (in either order, among others); and the offset of the
/// colon after the second.
fn smuggling() -> impl Strategy<Value = (Vec<u8>, usize)> {
    (
        prop::collection::vec(other_header(), 0..3),
        name(&["content-length"]),
        name(&["transfer-encoding"]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(others, cl, te, te_first, lower)| {
            let nl = "\r\n";
            let (cl, te) = if lower {
                (cl.to_ascii_lowercase(), te.to_ascii_lowercase())
            } else {
                (cl, te)
            };
            let cl = format!("{cl}: 5");
            let te = format!("{te}: chunked");
            let (first, second) = if te_first { (te, cl) } else { (cl, te) };
            let mut head = format!("POST /smuggled HTTP/1.1{nl}{first}{nl}");
            for h in &others {
                head.push_str(&format!("{h}{nl}"));
            }
            let colon = head.len() + second.find(':').unwrap();
            head.push_str(&format!("{second}{nl}{nl}0\r\n\r\n"));
            (head.into_bytes(), colon)
        })
}

#[test]
fn a_bare_lf_ending_a_head_line_is_flagged_there() {
    for stream in [
        // The request line,
        &b"GET / HTTP/1.1\nhost: a\r\n\r\n"[..],
        // a header line of no interest,
        b"GET / HTTP/1.1\r\nhost: a\n\r\n",
        // a Content-Length line,
        b"POST / HTTP/1.1\r\ncontent-length: 1\n\r\nz",
        // a name cut short,
        b"GET / HTTP/1.1\r\ncontent\n\r\n",
        // the empty line that ends the head,
        b"GET / HTTP/1.1\r\nhost: a\r\n\n",
        // and in a later request on the connection.
        b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nhost: b\n\r\n",
    ] {
        // The first LF without a CR before it.
        let lf = (0..stream.len())
            .find(|&i| stream[i] == b'\n' && (i == 0 || stream[i - 1] != b'\r'))
            .unwrap();
        assert_eq!(
            flagged(stream),
            Some(lf),
            "{:?}",
            String::from_utf8_lossy(stream)
        );
    }
}

#[test]
fn bare_lf_in_bodies_and_chunk_data_is_not_a_head() {
    assert_followed(
        b"POST /a HTTP/1.1\r\ncontent-length: 4\r\n\r\na\nb\n\
          POST /b HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\n\n\n\r\n0\r\n\r\n",
    );
}

proptest! {
    #[test]
    fn valid_request_sequences_are_never_flagged(
        requests in prop::collection::vec(request(), 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let stream = requests.concat();
        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        let (framing, at) = scan_cut(&stream, &cuts);
        prop_assert_eq!(at, None);
        prop_assert_eq!(framing.state, State::Start);
    }

    #[test]
    fn a_smuggling_head_is_flagged_at_exactly_that_request(
        requests in prop::collection::vec(request(), 0..5),
        (head, colon) in smuggling(),
        place in any::<prop::sample::Index>(),
        after in prop::collection::vec(request(), 0..2),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let place = place.index(requests.len() + 1);
        let before = requests[..place].concat();
        let stream = [before.clone(), head, requests[place..].concat(), after.concat()].concat();
        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        prop_assert_eq!(scan_cut(&stream, &cuts).1, Some(before.len() + colon));
    }
}

use super::*;

const LIMITS: Limits = Limits {
    max_head_bytes: 1024,
    max_headers: 8,
    max_target_bytes: 64,
};

fn parse(bytes: &[u8]) -> Result<Option<RequestHead>, Refusal> {
    parse_request(&mut BytesMut::from(bytes), &LIMITS)
}

fn refusal(bytes: &[u8]) -> Refusal {
    parse(bytes).expect_err("refused")
}

#[test]
fn a_head_is_taken_once_it_is_all_there_and_leaves_what_follows() {
    let whole = b"\r\nPOST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-A: 1\r\nx-a: 2\r\n\r\nabcGET";
    for cut in 0..whole.len() - 6 {
        assert!(parse(&whole[..cut]).unwrap().is_none(), "cut at {cut}");
    }
    let mut buf = BytesMut::from(&whole[..]);
    let head = parse_request(&mut buf, &LIMITS).unwrap().unwrap();
    assert_eq!(head.method, Method::POST);
    assert_eq!(head.uri, "/a?b=c");
    assert_eq!(head.version, Version::HTTP_11);
    assert_eq!(head.framing, Framing::Length(3));
    let xa: Vec<_> = head.headers.get_all("x-a").iter().collect();
    assert_eq!(xa, ["1", "2"]);
    assert_eq!(&buf[..], b"abcGET");
}

#[test]
fn framing_follows_one_set_of_rules() {
    let framing = |headers: &str| {
        parse(format!("PUT / HTTP/1.1\r\n{headers}\r\n").as_bytes()).map(|h| h.unwrap().framing)
    };
    assert_eq!(framing(""), Ok(Framing::Length(0)));
    assert_eq!(framing("content-length: 5\r\n"), Ok(Framing::Length(5)));
    assert_eq!(
        framing("content-length: 5\r\ncontent-length: 5\r\n"),
        Ok(Framing::Length(5))
    );
    assert_eq!(
        framing("transfer-encoding: , Chunked\r\n"),
        Ok(Framing::Chunked)
    );
    // Another coding before `chunked` is valid HTTP, but the engine would lose it: 501.
    for other in [
        "gzip, chunked",
        "identity, chunked",
        "gzip,\r\ntransfer-encoding: chunked",
    ] {
        let result = framing(&format!("transfer-encoding: {other}\r\n"));
        assert_eq!(result, Err(Refusal::UnknownCoding), "{other:?}");
    }
    assert_eq!(Refusal::UnknownCoding.status(), StatusCode::NOT_IMPLEMENTED);
    for bad in [
        "+5",
        "5,6",
        "5, 5",
        "-1",
        "",
        "0x5",
        "5 5",
        "99999999999999999999",
    ] {
        assert_eq!(
            framing(&format!("content-length: {bad}\r\n")),
            Err(Refusal::Length),
            "{bad:?}"
        );
    }
    assert_eq!(
        framing("content-length: 5\r\ncontent-length: 6\r\n"),
        Err(Refusal::Length)
    );
    for bad in [
        "gzip",
        "chunked, gzip",
        "chunked, chunked",
        "chunked,",
        "identity",
    ] {
        assert_eq!(
            framing(&format!("transfer-encoding: {bad}\r\n")),
            Err(Refusal::Encoding),
            "{bad:?}"
        );
    }
    assert_eq!(
        framing("content-length: 5\r\ntransfer-encoding: chunked\r\n"),
        Err(Refusal::LengthAndEncoding)
    );
    assert_eq!(
        parse(b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n").unwrap_err(),
        Refusal::EncodingInHttp10
    );
}

#[test]
fn every_ambiguity_in_a_head_is_refused() {
    assert_eq!(
        refusal(b"GET / HTTP/1.1\nHost: x\r\n\r\n"),
        Refusal::BareLineEnd
    );
    assert_eq!(
        refusal(b"GET / HTTP/1.1\r\nHost: x\n\r\n"),
        Refusal::BareLineEnd
    );
    assert_eq!(refusal(b"\nGET / HTTP/1.1\r\n\r\n"), Refusal::BareLineEnd);
    assert_eq!(
        refusal(b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n"),
        Refusal::BareLineEnd
    );
    // As soon as the byte after a lone CR is there, not only once the head is whole.
    let lone = b"GET / HTTP/1.1\r\nA: b\rc\r\nB: d\r\n\r\n";
    let cr = lone.iter().rposition(|&b| b == b'c').unwrap() - 1;
    for cut in cr + 2..=lone.len() {
        assert_eq!(refusal(&lone[..cut]), Refusal::BareLineEnd, "cut at {cut}");
    }
    assert!(parse(&lone[..=cr]).unwrap().is_none());
    assert!(
        matches!(
            refusal(b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"),
            Refusal::Malformed(_)
        ),
        "obs-fold"
    );
    assert!(
        matches!(
            refusal(b"GET / HTTP/1.1\r\nA : b\r\n\r\n"),
            Refusal::Malformed(_)
        ),
        "space before the colon"
    );
    assert!(matches!(
        refusal(b"G@T / HTTP/1.1\r\n\r\n"),
        Refusal::Malformed(_)
    ));
    assert!(matches!(
        refusal(b"GET / HTTP/1.2\r\n\r\n"),
        Refusal::Malformed(_)
    ));
    assert!(matches!(
        refusal(b"GET / HTTP/2.0\r\n\r\n"),
        Refusal::Malformed(_)
    ));
    assert!(matches!(
        refusal(b"GET /a b HTTP/1.1\r\n\r\n"),
        Refusal::Malformed(_)
    ));
    assert!(matches!(
        refusal(b"GET / HTTP/1.1\r\nA: \0\r\n\r\n"),
        Refusal::Malformed(_)
    ));
}

#[test]
fn the_limits_give_414_and_431() {
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(64));
    assert_eq!(refusal(long.as_bytes()).status(), StatusCode::URI_TOO_LONG);
    let many: String = (0..9).map(|i| format!("h{i}: v\r\n")).collect();
    let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
    assert_eq!(refusal(head.as_bytes()), Refusal::TooManyHeaders(8));
    let big = format!("GET / HTTP/1.1\r\nA: {}", "v".repeat(1100));
    assert_eq!(
        refusal(big.as_bytes()),
        Refusal::HeadTooLarge(1024),
        "even unfinished"
    );
    assert_eq!(
        refusal(big.as_bytes()).status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
}

/// A decoded chunked body: its data, its trailers, and the bytes after it.
type Decoded = (Vec<u8>, Option<HeaderMap>, Vec<u8>);

/// Every piece of a chunked body fed in `step`-byte reads.
fn decode(bytes: &[u8], step: usize) -> Result<Decoded, Refusal> {
    let mut decoder = Chunked::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf)? {
            Some(Piece::Data(d)) => data.extend_from_slice(&d),
            Some(Piece::End) => return Ok((data, None, [&buf[..], &bytes[fed..]].concat())),
            Some(Piece::Trailers(t)) => {
                return Ok((data, Some(t), [&buf[..], &bytes[fed..]].concat()));
            }
            None => {
                assert!(fed < bytes.len(), "ran out of input");
                let n = step.min(bytes.len() - fed);
                buf.extend_from_slice(&bytes[fed..fed + n]);
                fed += n;
            }
        }
    }
}

#[test]
fn a_chunked_body_decodes_the_same_in_any_reads() {
    let body = b"3;name=\"v\"\r\nabc\r\nA \r\n0123456789\r\n0\r\nx-t: 1\r\n\r\nNEXT";
    for step in 1..body.len() {
        let (data, trailers, rest) = decode(body, step).unwrap();
        assert_eq!(data, b"abc0123456789", "step {step}");
        assert_eq!(trailers.unwrap()["x-t"], "1");
        assert_eq!(rest, b"NEXT");
    }
    let (data, trailers, rest) = decode(b"0\r\n\r\n", 1).unwrap();
    assert!(data.is_empty() && trailers.is_none() && rest.is_empty());
}

#[test]
fn a_bad_chunked_body_is_refused() {
    for bad in [
        &b"g\r\n"[..],
        b"3\nabc\r\n",
        b"3\r\nabcX\r\n",
        b"3\r\nabc\n0\r\n\r\n",
        b"ffffffffffffffffff\r\n",
        b"3;a\0b\r\nabc\r\n",
        b" 3\r\nabc\r\n",
        b"3 x\r\nabc\r\n",
        b"0\r\nx-t 1\r\n\r\n",
        b"0\r\nx-t: 1\n\r\n",
    ] {
        let mut decoder = Chunked::new(LIMITS);
        let mut buf = BytesMut::from(bad);
        let result = loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Piece::Data(_))) => continue,
                other => break other,
            }
        };
        assert!(
            result.is_err(),
            "{:?}: {result:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

fn response(bytes: &[u8], method: &Method) -> Result<ResponseHead, Refusal> {
    parse_response(&mut BytesMut::from(bytes), &LIMITS, method).map(|h| h.expect("complete"))
}

#[test]
fn a_response_is_framed_by_its_status_its_request_and_its_headers() {
    let framing = |bytes: &[u8], method: &Method| response(bytes, method).map(|h| h.framing);
    let get = &Method::GET;
    assert_eq!(
        framing(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", get),
        Ok(ResponseFraming::Length(5))
    );
    // No body, whatever the headers say.
    for (bytes, method) in [
        (
            &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"[..],
            &Method::HEAD,
        ),
        (b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n", get),
        (
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
            get,
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\n", get),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
            get,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            &Method::CONNECT,
        ),
    ] {
        assert_eq!(
            framing(bytes, method),
            Ok(ResponseFraming::Length(0)),
            "{bytes:?}"
        );
    }
    assert_eq!(
        framing(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            get
        ),
        Ok(ResponseFraming::Chunked)
    );
    // Neither: until the connection closes.
    assert_eq!(
        framing(b"HTTP/1.1 200 OK\r\n\r\n", get),
        Ok(ResponseFraming::Close)
    );
    // A coding other than chunked, which the body framed anew would lose, before chunked or
    // alone (framed by the close: RFC 9112 section 6.3).
    assert_eq!(
        framing(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            get
        ),
        Err(Refusal::UnknownCoding)
    );
    for coding in ["gzip", "chunked, gzip", "identity"] {
        let head = format!("HTTP/1.1 200 OK\r\ntransfer-encoding: {coding}\r\n\r\n");
        assert_eq!(
            framing(head.as_bytes(), get),
            Err(Refusal::Encoding),
            "{coding}"
        );
    }
    // No body follows a HEAD's or a 304's length, but it is passed on: checked as any other.
    for (bytes, method) in [
        (
            &b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n"[..],
            &Method::HEAD,
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            get,
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: x\r\n\r\n",
            get,
        ),
    ] {
        assert_eq!(framing(bytes, method), Err(Refusal::Length), "{bytes:?}");
    }
    // Dropped where none may be given, so not read.
    assert_eq!(
        framing(b"HTTP/1.1 204 No Content\r\ncontent-length: x\r\n\r\n", get),
        Ok(ResponseFraming::Length(0))
    );
    // The ambiguities are refused (502 to the client).
    assert_eq!(
        framing(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            get
        ),
        Err(Refusal::LengthAndEncoding)
    );
    assert_eq!(
        framing(
            b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            get
        ),
        Err(Refusal::EncodingInHttp10)
    );
    assert_eq!(
        framing(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n",
            get
        ),
        Err(Refusal::Encoding)
    );
    assert_eq!(
        framing(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            get
        ),
        Err(Refusal::Length)
    );
    assert_eq!(
        framing(b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", get),
        Err(Refusal::BareLineEnd)
    );
    let head = response(b"HTTP/1.0 404 Not Found\r\nx-a: 1\r\n\r\n", get).unwrap();
    assert_eq!(
        (head.status, head.version),
        (StatusCode::NOT_FOUND, Version::HTTP_10)
    );
    assert_eq!(head.headers["x-a"], "1");
}

#[test]
fn empty_lines_before_the_request_line_count_against_the_head_limit() {
    let mut buf = BytesMut::from("\r\n".repeat(400).as_bytes());
    assert!(
        parse_request(&mut buf, &LIMITS).unwrap().is_none(),
        "within the limit: more to come"
    );
    buf.extend_from_slice("\r\n".repeat(200).as_bytes());
    assert_eq!(
        parse_request(&mut buf, &LIMITS).unwrap_err(),
        Refusal::HeadTooLarge(1024),
        "a client sending empty lines for ever is refused at the limit"
    );
}

#[test]
fn a_chunked_body_that_has_ended_takes_nothing_more() {
    let mut decoder = Chunked::new(LIMITS);
    let mut buf = BytesMut::from(&b"0\r\n\r\nGET / HTTP/1.1\r\n\r\n"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Piece::End)));
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Piece::End)));
    assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n\r\n");
}

#[test]
fn a_head_notes_which_of_the_names_asked_about_it_carries_and_no_other() {
    let values = [
        "0",
        "chunked",
        "close",
        "trailers",
        "websocket",
        "100-continue",
    ];
    for (name, value) in PRESENT.iter().zip(values) {
        let upper = name.as_str().to_ascii_uppercase();
        let head =
            parse(format!("POST / HTTP/1.1\r\nHost: x\r\n{upper}: {value}\r\n\r\n").as_bytes())
                .unwrap()
                .unwrap();
        for other in &PRESENT {
            assert_eq!(head.present.has(other), other == name, "{name}: {other}");
        }
        // A name it does not note is to be looked up.
        assert!(head.present.has(&header::HOST));
        assert!(head.present.has(&header::ACCEPT));
    }
    let bare = parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(PRESENT.iter().all(|n| !bare.present.has(n)));
    let response = response(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
        &Method::GET,
    )
    .unwrap();
    let has: Vec<_> = PRESENT.iter().filter(|n| response.present.has(n)).collect();
    assert_eq!(has, [&header::CONTENT_LENGTH, &header::CONNECTION]);
}

#[test]
fn a_forwarded_heads_routing_headers_are_read_apart_and_its_map_stays_small() {
    // What a standby sends its leader: the forwarding headers and the three routing ones,
    // one of them twice, and a fencing header a client made up.
    let limits = Limits {
        max_headers: 16,
        ..LIMITS
    };
    let head = parse_request(
        &mut BytesMut::from(
            &b"GET / HTTP/1.1\r\nHost: a\r\nX-Understudy-For: pod-a\r\nX-Forwarded-For: 198.18.0.9\r\n\
          x-understudy-hops: 1\r\nX-Forwarded-Proto: http\r\nX-UNDERSTUDY-HOLD-MS: 250\r\n\
          X-Forwarded-Host: a\r\nx-understudy-for: pod-b\r\nVia: 1.1 b\r\nX-Understudy-Leader: me\r\n\r\n"[..],
        ),
        &limits,
    )
    .unwrap()
    .unwrap();
    // The routing lines are not in the map; the others are, in the order they came.
    let names: Vec<_> = head.headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "host",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "via",
            "x-understudy-leader"
        ]
    );
    // The first value of each routing header, apart.
    let claims = head.claims.expect("routing headers");
    let claims: Vec<_> = claims.lines().map(|(n, v)| (n, v.clone())).collect();
    assert_eq!(
        claims,
        [
            (crate::headers::FOR, HeaderValue::from_static("pod-a")),
            (crate::headers::HOPS, HeaderValue::from_static("1")),
            (crate::headers::HOLD_MS, HeaderValue::from_static("250")),
        ]
    );
    // Room for none of the four forwarding lines, which are all there: six lines fit the
    // map's smallest table (8 slots, 6 lines), which the allocator's per-thread cache
    // serves; room for four more would take 16 slots, a block past it.
    assert_eq!(head.headers.capacity(), 6);
    let mut map = head.headers;
    map.reserve(crate::headers::forwarding_room(&map));
    assert_eq!(map.capacity(), 6, "a proxy's edits need no more room");

    // A client's request: room for all four.
    let head = parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(head.claims.is_none());
    assert!(head.headers.capacity() >= 5, "{}", head.headers.capacity());
    assert_eq!(crate::headers::forwarding_room(&head.headers), 4);
}

//! Request heads and bodies from the bytes of an HTTP/1 connection, sans IO.
//!
//! [`parse_request`] takes a request head off the front of a buffer once it is all there,
//! with the framing of the body that follows ([`Framing`]); [`parse_response`] does the same
//! for a response from the app or a peer ([`ResponseFraming`]); [`Chunked`] decodes a
//! chunked body piece by piece. Neither reads or allocates more than a message needs: a head is
//! bounded by [`Limits`] before it is parsed, a chunk-size line and the trailers by the
//! same limits.
//!
//! The rules (RFC 9112), each a [`Refusal`] with the status to answer and the connection
//! closed:
//! - lines end in CRLF: a bare LF (or a CR not followed by LF) anywhere in a head, a
//!   chunk-size line or the trailers is refused, as is obs-fold and whitespace between a
//!   header name and its colon;
//! - a method is a token, the version is HTTP/1.0 or HTTP/1.1, the target a valid URI of at
//!   most [`Limits::max_target_bytes`] (414);
//! - at most [`Limits::max_headers`] headers in [`Limits::max_head_bytes`] (431);
//! - `Content-Length` and `Transfer-Encoding` together are refused (hyper would frame by
//!   the chunked coding and drop the length; a front end that trusted the length is what
//!   such a request is usually smuggled past);
//! - `Content-Length`: digits only, one number a line (no list); repeated lines only with
//!   one value (passed on as one line);
//! - `Transfer-Encoding`: HTTP/1.1 only, with `chunked` last and only once; any other
//!   coding is refused, in a request with 501 (RFC 9112 section 6.1: the engine decodes only
//!   `chunked`, and the body it sends on is framed anew, so another coding would be lost);
//!   in a response too ([`parse_response`]);
//! - chunk sizes: hex digits that fit 64 bits, then optional spaces, extensions of visible
//!   characters, CRLF; chunk data ends in CRLF; trailers are header lines.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};
use memchr::{memchr, memchr_iter};
use std::mem::MaybeUninit;

use crate::headers::{self, Claims};

/// The bounds a request head is parsed within.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest head (request line, headers, the empty line), bytes; also bounds a chunk's
    /// size line and the trailers.
    pub max_head_bytes: usize,
    /// Most header lines in a head, and trailer lines after a chunked body.
    pub max_headers: usize,
    /// Longest request target, bytes.
    pub max_target_bytes: usize,
}

/// Why bytes from a client are refused. The connection is closed after the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A line ended in LF without CR, or a CR was not followed by LF.
    #[error("a line does not end in CRLF")]
    BareLineEnd,
    /// The request line or a header line is not valid HTTP/1 (obs-fold, whitespace before a
    /// colon, a character a token or field value may not hold, an unknown version).
    #[error("malformed request head ({0})")]
    Malformed(&'static str),
    /// The request target is not a valid URI.
    #[error("invalid request target")]
    Target,
    /// The request target is longer than allowed (414).
    #[error("request target longer than {0} bytes")]
    TargetTooLong(usize),
    /// More headers than allowed (431).
    #[error("more than {0} headers")]
    TooManyHeaders(usize),
    /// A head (or chunk-size line, or trailers) larger than allowed (431).
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// Both `Content-Length` and `Transfer-Encoding`.
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndEncoding,
    /// A `Content-Length` that is not one non-negative integer.
    #[error("invalid Content-Length")]
    Length,
    /// A `Transfer-Encoding` whose last coding is not `chunked`, or with `chunked` twice.
    #[error("Transfer-Encoding must end with chunked, once")]
    Encoding,
    /// `Transfer-Encoding` in an HTTP/1.0 request.
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    EncodingInHttp10,
    /// A `Transfer-Encoding` with a coding other than `chunked` before `chunked` (501 to a
    /// request; a response so framed is refused too, as is one with no `chunked` at all:
    /// [`Refusal::Encoding`]).
    #[error("a transfer coding other than chunked is not supported")]
    UnknownCoding,
    /// A chunk-size line, chunk end or trailer that is not valid.
    #[error("malformed chunked body ({0})")]
    Chunk(&'static str),
}

impl Refusal {
    /// The status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::TargetTooLong(_) => StatusCode::URI_TOO_LONG,
            Refusal::TooManyHeaders(_) | Refusal::HeadTooLarge(_) => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Refusal::UnknownCoding => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// How the body after a head is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` bytes (0: no body).
    Length(u64),
    /// The chunked coding ([`Chunked`]).
    Chunked,
}

/// Which of a few names a head's lines carry, noted as its map is built: the framing's, and
/// those the server and the client ask about every message. A name that is not there is not
/// looked up: a lookup hashes the name, and most messages carry none of them but one (about
/// 3 % of a forwarded request's instructions went on looking up names that were not there).
/// True of the head as parsed, not of a map edited since.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Present(u8);

/// The names [`Present`] notes, each at its bit. (A `static`: a `const` array of names is
/// built and dropped wherever it is used.)
static PRESENT: [HeaderName; 6] = [
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::TE,
    header::UPGRADE,
    header::EXPECT,
];

impl Present {
    /// `name`'s bit, if it is one of [`PRESENT`]. (`http`'s standard names compare as small
    /// integers.)
    fn bit(name: &HeaderName) -> u8 {
        PRESENT.iter().position(|n| n == name).map_or(0, |i| 1 << i)
    }

    /// Notes `name`.
    fn note(&mut self, name: &HeaderName) {
        self.0 |= Present::bit(name);
    }

    /// Whether a line named `name` is there; `true` for a name not noted (look it up).
    pub fn has(self, name: &HeaderName) -> bool {
        let bit = Present::bit(name);
        bit == 0 || self.0 & bit != 0
    }
}

/// A request head, as the proxy routes it.
#[derive(Debug)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The header lines, in order (names lower-cased).
    pub headers: HeaderMap,
    /// Which of the names the server asks about are among them.
    pub present: Present,
    /// How its body is framed.
    pub framing: Framing,
    /// Its routing headers, if it had any, which are not in `headers` (the proxy judges
    /// them: `headers::Claims::inbound`). Boxed: a forwarded request has them, and every
    /// connection's future has room for a head.
    pub claims: Option<Box<Claims>>,
}

/// Takes a complete request head off the front of `buf`: `Ok(None)` while it is not all
/// there yet (within the limits), else the head, or why the bytes are refused.
///
/// Empty lines before the request line are skipped (RFC 9112 §2.2).
pub fn parse_request(buf: &mut BytesMut, limits: &Limits) -> Result<Option<RequestHead>, Refusal> {
    let Some((start, end)) = head_bounds(buf, limits.max_head_bytes)? else {
        return partial_request(buf).map(|()| None);
    };
    // The head leaves the buffer whole (a refused one closes the connection): its target
    // and values are views of it, not copies.
    let bytes = buf.split_to(end).freeze();
    let mut stack = [MaybeUninit::uninit(); STACK_SLOTS];
    let mut heap = Vec::new();
    let slots = slots(&mut stack, &mut heap, limits.max_headers);
    let mut req = httparse::Request::new(&mut []);
    let result = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        &bytes[start..],
        slots,
    );
    parsed(result, end - start, limits)?;
    let target = req.path.unwrap_or_default();
    if target.len() > limits.max_target_bytes {
        return Err(Refusal::TargetTooLong(limits.max_target_bytes));
    }
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| Refusal::Malformed("method"))?;
    let uri =
        Uri::from_maybe_shared(bytes.slice_ref(target.as_bytes())).map_err(|_| Refusal::Target)?;
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    // The routing headers go to `claims`, not into the map; room in it, in one
    // allocation, for what a proxy adds that the head lacks: X-Forwarded-For, -Proto,
    // -Host and Via (`headers::add_forwarded`). (An attempt's fencing or routing headers
    // are written beside the map: `client::Head::extra`.)
    // (Two lines and room for four take the map's smallest table whatever their names: a
    // client's head is not looked over twice.)
    let lines = req.headers.len();
    let capacity = if lines <= 2 {
        lines + headers::FORWARDING
    } else {
        let (routing, forwarding) = req.headers.iter().fold((0, 0), |(routing, fwd), h| {
            let name = h.name.as_bytes();
            (
                routing + usize::from(Claims::routing(name).is_some()),
                fwd + usize::from(headers::is_forwarding_name(name)),
            )
        });
        lines - routing + headers::FORWARDING.saturating_sub(forwarding)
    };
    let mut claims = None;
    let (mut headers, present) = header_map(&bytes, req.headers, capacity, Some(&mut claims))?;
    let framing = framing(&headers, present, version)?;
    if let (Framing::Length(n), true) = (framing, present.has(&header::CONTENT_LENGTH)) {
        // Repeated lines of one value: passed on as one.
        if headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .nth(1)
            .is_some()
        {
            // (The first as it was written, as hyper passes it on.)
            let first = headers[header::CONTENT_LENGTH].clone();
            debug_assert_eq!(digits(first.as_bytes()), Some(n));
            headers.insert(header::CONTENT_LENGTH, first);
        }
    }
    Ok(Some(RequestHead {
        method,
        uri,
        version,
        headers,
        present,
        framing,
        claims,
    }))
}

/// Refuses the start of a request head that cannot become a valid one (a TLS handshake on
/// the plain port, say) at once, instead of waiting for its end until the header read
/// timeout. Only the method is looked at (at most its first 32 bytes), so that a head sent
/// a byte at a time costs no more than one sent whole.
fn partial_request(buf: &[u8]) -> Result<(), Refusal> {
    let mut rest = buf;
    while let Some(after) = rest.strip_prefix(b"\r\n") {
        rest = after;
    }
    let method = rest.iter().take(32).take_while(|&&b| b != b' ');
    for &b in method {
        let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        // A lone CR may yet be an empty line's.
        if !(tchar || (b == b'\r' && rest.len() == 1)) {
            return Err(Refusal::Malformed(parse_error(httparse::Error::Token)));
        }
    }
    Ok(())
}

/// Where the head in `buf` starts (after empty lines) and ends (after its empty line), once
/// it is all there; every line checked to end in CRLF.
///
/// Each line's end is found with one search; that no CR stands anywhere but before an LF is
/// checked once for all the lines searched, by counting: each LF was seen to follow a CR,
/// so there are as many CRs as lines unless one stands alone. (A second search in every
/// line for a CR cost about 2 % of a forwarded request.)
fn head_bounds(buf: &[u8], max: usize) -> Result<Option<(usize, usize)>, Refusal> {
    let mut start = 0;
    let mut line = 0;
    let mut lines = 0;
    let lone_cr = |end: usize, lines: usize| memchr_iter(b'\r', &buf[..end]).count() != lines;
    loop {
        let Some(at) = memchr(b'\n', &buf[line..]).map(|at| line + at) else {
            // A CR must be followed by LF; one at the very end may still be.
            if buf.len() > 1 && lone_cr(buf.len() - 1, lines) {
                return Err(Refusal::BareLineEnd);
            }
            // Empty lines skipped before it count too: they are still in the buffer.
            return if buf.len() > max {
                Err(Refusal::HeadTooLarge(max))
            } else {
                Ok(None)
            };
        };
        if at == 0 || buf[at - 1] != b'\r' {
            return Err(Refusal::BareLineEnd);
        }
        if at + 1 > max {
            return Err(Refusal::HeadTooLarge(max));
        }
        lines += 1;
        let empty = at - 1 == line;
        line = at + 1;
        if empty {
            if line - 2 == start {
                // An empty line before the request line.
                start = line;
                continue;
            }
            if lone_cr(line, lines) {
                return Err(Refusal::BareLineEnd);
            }
            return Ok(Some((start, line)));
        }
    }
}

/// Header slots kept on the stack, when the limit allows: a head is parsed without an
/// allocation for them, or zeroing them.
const STACK_SLOTS: usize = 128;

/// `max` header slots for httparse: `stack`'s when they are enough, else `heap` grown.
fn slots<'s, 'b>(
    stack: &'s mut [MaybeUninit<httparse::Header<'b>>; STACK_SLOTS],
    heap: &'s mut Vec<MaybeUninit<httparse::Header<'b>>>,
    max: usize,
) -> &'s mut [MaybeUninit<httparse::Header<'b>>] {
    if max <= STACK_SLOTS {
        &mut stack[..max]
    } else {
        heap.resize(max, MaybeUninit::uninit());
        heap
    }
}

/// httparse's verdict on a head of `len` bytes (all there, by [`head_bounds`]).
fn parsed(
    result: Result<httparse::Status<usize>, httparse::Error>,
    len: usize,
    limits: &Limits,
) -> Result<(), Refusal> {
    match result {
        Ok(httparse::Status::Complete(n)) if n == len => Ok(()),
        Ok(_) => Err(Refusal::Malformed("head")),
        Err(httparse::Error::TooManyHeaders) => Err(Refusal::TooManyHeaders(limits.max_headers)),
        Err(e) => Err(Refusal::Malformed(parse_error(e))),
    }
}

fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "header name",
        httparse::Error::HeaderValue => "header value",
        httparse::Error::NewLine => "line end",
        httparse::Error::Token => "method or target",
        httparse::Error::Version => "version",
        _ => "head",
    }
}

/// The framing rules of the module docs.
fn framing(headers: &HeaderMap, present: Present, version: Version) -> Result<Framing, Refusal> {
    // (Each name looked up only if the head has it.)
    match (
        present.has(&header::CONTENT_LENGTH),
        present.has(&header::TRANSFER_ENCODING),
    ) {
        (true, true) => Err(Refusal::LengthAndEncoding),
        (false, false) => Ok(Framing::Length(0)),
        (true, false) => content_length(headers).map(Framing::Length),
        (false, true) => {
            if version != Version::HTTP_11 {
                return Err(Refusal::EncodingInHttp10);
            }
            let mut items = Vec::new();
            for line in headers.get_all(header::TRANSFER_ENCODING) {
                let text = line.to_str().map_err(|_| Refusal::Encoding)?;
                items.extend(text.split(',').map(str::trim));
            }
            let chunked = |c: &str| c.eq_ignore_ascii_case("chunked");
            let once = items.iter().filter(|c| chunked(c)).count() == 1;
            let other = items.iter().any(|c| !c.is_empty() && !chunked(c));
            match items.last() {
                // Framed by `chunked` all the same, but a coding before it would be lost.
                Some(last) if chunked(last) && once && other => Err(Refusal::UnknownCoding),
                Some(last) if chunked(last) && once => Ok(Framing::Chunked),
                _ => Err(Refusal::Encoding),
            }
        }
    }
}

/// The length the `Content-Length` lines give: digits only, and the same number if repeated.
fn content_length(headers: &HeaderMap) -> Result<u64, Refusal> {
    let mut length = None;
    for line in headers.get_all(header::CONTENT_LENGTH) {
        let n = digits(line.as_bytes()).ok_or(Refusal::Length)?;
        if length.is_some_and(|l| l != n) {
            return Err(Refusal::Length);
        }
        length = Some(n);
    }
    length.ok_or(Refusal::Length)
}

/// How the body after a response head is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// `Content-Length` bytes, or none at all (0) for a response that has no body: to `HEAD`,
    /// 1xx, 204, 304, or a `2xx` to `CONNECT`.
    Length(u64),
    /// The chunked coding ([`Chunked`]).
    Chunked,
    /// Everything until the connection closes (neither length nor chunked): the connection
    /// cannot be used again.
    Close,
}

/// A response head from the app or a peer.
#[derive(Debug)]
pub struct ResponseHead {
    /// The status. An informational one other than 101 is followed by the final response.
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The header lines, in order (names lower-cased).
    pub headers: HeaderMap,
    /// Which of the names the client asks about are among them.
    pub present: Present,
    /// How its body is framed.
    pub framing: ResponseFraming,
}

/// Takes a complete response head to a `method` request off the front of `buf`, as
/// [`parse_request`] does for requests. The same line rules hold; the framing follows RFC
/// 9112 §6.3, except that `Content-Length` with `Transfer-Encoding` is refused (hyper would
/// frame by the coding), and so is a `Transfer-Encoding` that is not `chunked` alone (a
/// coding before it, or a response framed by the connection's close after `gzip`, say): the
/// body is framed anew for the client, so the coding would be lost and the client left to
/// read coded bytes as plain ones. nginx refuses those too. Whoever answers through
/// understudy gets no benefit of the doubt.
pub fn parse_response(
    buf: &mut BytesMut,
    limits: &Limits,
    method: &Method,
) -> Result<Option<ResponseHead>, Refusal> {
    let Some((start, end)) = head_bounds(buf, limits.max_head_bytes)? else {
        return Ok(None);
    };
    // (As for requests: a refused response is not read further.)
    let bytes = buf.split_to(end).freeze();
    let mut stack = [MaybeUninit::uninit(); STACK_SLOTS];
    let mut heap = Vec::new();
    let slots = slots(&mut stack, &mut heap, limits.max_headers);
    let mut resp = httparse::Response::new(&mut []);
    let result = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        &bytes[start..],
        slots,
    );
    parsed(result, end - start, limits)?;
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(Refusal::Malformed("status"))?;
    let version = match resp.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    // Room for the `Via` a proxy adds.
    let (headers, present) = header_map(&bytes, resp.headers, resp.headers.len() + 1, None)?;
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || method == Method::HEAD
        || (method == Method::CONNECT && status.is_success());
    let framing = if bodiless {
        // No body follows, but the length of a `HEAD`'s or a `304`'s is passed on: checked
        // as any other.
        let passed_on = method == Method::HEAD || status == StatusCode::NOT_MODIFIED;
        if passed_on && present.has(&header::CONTENT_LENGTH) {
            content_length(&headers)?;
        }
        ResponseFraming::Length(0)
    } else {
        match framing(&headers, present, version)? {
            Framing::Length(n) if present.has(&header::CONTENT_LENGTH) => {
                ResponseFraming::Length(n)
            }
            Framing::Length(_) => ResponseFraming::Close,
            Framing::Chunked => ResponseFraming::Chunked,
        }
    };
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        present,
        framing,
    }))
}

/// The header lines httparse found in `head`, as a map of `capacity` lines (a kept one when
/// there is one: [`super::spare`]; names lower-cased, order kept; the values views of
/// `head`), and which of [`Present`]'s names they carry. With `claims`, the routing headers
/// go there (allocated at the first) instead of into the map.
fn header_map(
    head: &Bytes,
    lines: &[httparse::Header<'_>],
    capacity: usize,
    mut claims: Option<&mut Option<Box<Claims>>>,
) -> Result<(HeaderMap, Present), Refusal> {
    let mut headers = super::spare::map(capacity);
    let mut present = Present::default();
    for h in lines {
        let value = || {
            HeaderValue::from_maybe_shared(head.slice_ref(h.value))
                .map_err(|_| Refusal::Malformed("value"))
        };
        let raw = h.name.as_bytes();
        if let Some(claims) = claims.as_deref_mut()
            && let Some(which) = Claims::routing(raw)
        {
            let value = value()?;
            claims.get_or_insert_with(Box::default).keep(which, value);
            continue;
        }
        let name = match headers::known_name(raw) {
            Some(name) => name,
            None => HeaderName::from_bytes(raw).map_err(|_| Refusal::Malformed("name"))?,
        };
        let value = value()?;
        present.note(&name);
        headers.append(name, value);
    }
    Ok((headers, present))
}

/// A decimal number of digits only (no sign, no space), if it fits 64 bits.
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// What [`Chunked::decode`] took off the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Body bytes.
    Data(Bytes),
    /// The trailers after the last chunk, when there are any; the body has ended.
    Trailers(HeaderMap),
    /// The body has ended (without trailers).
    End,
}

/// Decodes one chunked body; see the module docs for its rules.
#[derive(Debug)]
pub struct Chunked {
    /// Bytes of the current chunk's data still to come, or `None` at a size line.
    left: Option<u64>,
    /// The CRLF after a chunk's data is still to come.
    data_end: bool,
    /// After the last chunk: the trailers are being read.
    last: bool,
    /// The body has ended: [`Chunked::decode`] gives [`Piece::End`] again and takes nothing.
    done: bool,
    limits: Limits,
}

impl Chunked {
    /// A decoder for a body after a head parsed within `limits`.
    pub fn new(limits: Limits) -> Chunked {
        Chunked {
            left: None,
            data_end: false,
            last: false,
            done: false,
            limits,
        }
    }

    /// Takes the next piece off the front of `buf`: `Ok(None)` when more bytes are needed.
    /// Call again after [`Piece::Data`]; [`Piece::End`] and [`Piece::Trailers`] end the
    /// body, and what follows in `buf` is the next request (later calls take none of it).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Piece>, Refusal> {
        if self.done {
            return Ok(Some(Piece::End));
        }
        loop {
            if self.last {
                let piece = self.trailers(buf)?;
                self.done = piece.is_some();
                return Ok(piece);
            }
            if self.data_end {
                match buf.get(..2) {
                    None if buf.first().is_none_or(|&b| b == b'\r') => return Ok(None),
                    Some(b"\r\n") => {
                        let _ = buf.split_to(2);
                        self.data_end = false;
                    }
                    _ => return Err(Refusal::Chunk("chunk data not ended by CRLF")),
                }
            }
            match self.left {
                Some(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    if left == 0 {
                        self.left = None;
                        self.data_end = true;
                    } else {
                        self.left = Some(left);
                    }
                    return Ok(Some(Piece::Data(data)));
                }
                None => {
                    let Some(size) = self.size_line(buf)? else {
                        return Ok(None);
                    };
                    if size == 0 {
                        self.last = true;
                    } else {
                        self.left = Some(size);
                    }
                }
            }
        }
    }

    /// A chunk-size line off the front of `buf`: the size, once the line is all there.
    fn size_line(&self, buf: &mut BytesMut) -> Result<Option<u64>, Refusal> {
        let max = self.limits.max_head_bytes;
        let Some(lf) = memchr(b'\n', buf) else {
            if buf.len() > max {
                return Err(Refusal::HeadTooLarge(max));
            }
            // Whatever is there must be a valid start of a size line.
            return check_size_prefix(buf).map(|()| None);
        };
        if lf > max {
            return Err(Refusal::HeadTooLarge(max));
        }
        if lf == 0 || buf[lf - 1] != b'\r' {
            return Err(Refusal::BareLineEnd);
        }
        let line = &buf[..lf - 1];
        let hex = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if hex == 0 {
            return Err(Refusal::Chunk("chunk size is not hex"));
        }
        let size = u64::from_str_radix(std::str::from_utf8(&line[..hex]).unwrap_or("x"), 16)
            .map_err(|_| Refusal::Chunk("chunk size too large"))?;
        let rest = &line[hex..];
        let ws = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        match rest.get(ws) {
            None => {}
            // Extensions: ignored, but only of visible characters, spaces and tabs.
            Some(b';')
                if rest[ws..]
                    .iter()
                    .any(|&b| b != b'\t' && (b < b' ' || b == 0x7f)) =>
            {
                return Err(Refusal::Chunk("control character in a chunk extension"));
            }
            Some(b';') => {}
            Some(_) => return Err(Refusal::Chunk("chunk size is not hex")),
        }
        let _ = buf.split_to(lf + 1);
        Ok(Some(size))
    }

    /// After the last chunk: trailer lines up to an empty line.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Option<Piece>, Refusal> {
        if buf.starts_with(b"\r\n") {
            let _ = buf.split_to(2);
            return Ok(Some(Piece::End));
        }
        let max = self.limits.max_head_bytes;
        // The trailers end with an empty line, as a head does.
        let Some((_, end)) = head_bounds(buf, max)? else {
            return Ok(None);
        };
        let mut slots = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let trailers = match httparse::parse_headers(&buf[..end], &mut slots) {
            Ok(httparse::Status::Complete((n, fields))) if n == end => fields,
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Refusal::TooManyHeaders(self.limits.max_headers));
            }
            _ => return Err(Refusal::Chunk("malformed trailers")),
        };
        let mut map = HeaderMap::with_capacity(trailers.len());
        for h in trailers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| Refusal::Chunk("malformed trailers"))?;
            let value = HeaderValue::from_bytes(h.value)
                .map_err(|_| Refusal::Chunk("malformed trailers"))?;
            map.append(name, value);
        }
        let _ = buf.split_to(end);
        Ok(Some(Piece::Trailers(map)))
    }
}

/// Whether the start of a size line (no LF yet) can still become a valid one.
fn check_size_prefix(buf: &[u8]) -> Result<(), Refusal> {
    match buf.first() {
        None => Ok(()),
        Some(b) if !b.is_ascii_hexdigit() => Err(Refusal::Chunk("chunk size is not hex")),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests;

//! Header rules: understudy's own headers, hop-by-hop stripping, `X-Forwarded-*` and `Via`.
//!
//! ## Which internal headers are trusted
//! With the mTLS peer channel on (`--peer-listen`), only requests that arrived there (from a
//! sidecar with a valid certificate) have their routing headers honoured
//! ([`Inbound::of`], trusted); on the plain data port every request is a client's
//! (untrusted). Without it, the rule is this one.
//! Sidecars talk to each other with two routing headers: [`FOR`] (the pod a forwarded request
//! is meant for) and [`HOPS`] (how many sidecars it has passed). A request is treated as
//! coming from a peer only when it carries **both**, with a hop count in `1..=MAX_HOPS`;
//! otherwise every `x-understudy-*` header is removed and the request is a client's. Only
//! then is [`HOLD_MS`] (what is left of the first sidecar's hold deadline) honoured too, and
//! only to shorten the local hold timeout, never to extend it. This cannot be forged into
//! anything harmful: the worst a client can do with made-up internal headers is get its own
//! request refused with 421, or answered 503 sooner. The fencing headers the app sees
//! ([`LEADER`], [`EPOCH`], [`LEASE`]) are removed from every incoming request and set only by the
//! sidecar that hands the request to its local app, so an app can trust them.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

/// Marker on a forwarded request: identity of the pod it is meant for.
pub const FOR: HeaderName = HeaderName::from_static(FOR_TEXT);
/// How many sidecars forwarded the request so far.
pub const HOPS: HeaderName = HeaderName::from_static(HOPS_TEXT);
/// On a forwarded request: milliseconds left of the first sidecar's hold deadline.
pub const HOLD_MS: HeaderName = HeaderName::from_static(HOLD_MS_TEXT);
// The names as text, for comparisons that build no `HeaderName`.
const FOR_TEXT: &str = "x-understudy-for";
const HOPS_TEXT: &str = "x-understudy-hops";
const HOLD_MS_TEXT: &str = "x-understudy-hold-ms";
/// Fencing token to the app: the leader's identity.
pub const LEADER: HeaderName = HeaderName::from_static("x-understudy-leader");
/// Fencing token to the app: the leader's epoch (`leaseTransitions`).
pub const EPOCH: HeaderName = HeaderName::from_static("x-understudy-epoch");
/// Fencing token to the app: the Lease the epoch counts in (with N slots, the slot's
/// `NAME-i`; with one, `NAME`).
pub const LEASE: HeaderName = HeaderName::from_static("x-understudy-lease");
/// On a 421 from a sidecar: the identity of the sidecar that refused (nothing reached an app).
pub const REFUSED: HeaderName = HeaderName::from_static("x-understudy-refused");

/// `X-Forwarded-For`: the client addresses a request came through (see [`add_forwarded`]).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static(X_FORWARDED_FOR_TEXT);
/// `X-Forwarded-Proto`: the scheme the client used.
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static(X_FORWARDED_PROTO_TEXT);
/// `X-Forwarded-Host`: the `Host` the client asked for.
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static(X_FORWARDED_HOST_TEXT);
const X_FORWARDED_FOR_TEXT: &str = "x-forwarded-for";
const X_FORWARDED_PROTO_TEXT: &str = "x-forwarded-proto";
const X_FORWARDED_HOST_TEXT: &str = "x-forwarded-host";

/// Names `http` does not know that every forwarded request carries (the sidecars' own and
/// the forwarding headers), for [`known_name`]. A `static`, not a `const`: a `const` array
/// is built, and its names dropped, wherever it is used (1 % of a forwarded request).
static KNOWN: [HeaderName; 10] = [
    FOR,
    HOPS,
    HOLD_MS,
    LEADER,
    EPOCH,
    LEASE,
    REFUSED,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
];

/// The token `name` (as it came, in any case) as one of [`KNOWN`]'s names, if it is one.
/// The parser takes these rather than building the name: `http` copies a name it does not
/// know into an allocation of its own, and a forwarded request carries several.
pub(crate) fn known_name(name: &[u8]) -> Option<HeaderName> {
    if name.len() < 2 || name[0] | 0x20 != b'x' {
        return None;
    }
    KNOWN
        .iter()
        .find(|k| token_is(name, k.as_str().as_bytes()))
        .cloned()
}

/// Whether the token `name` (a header name as httparse takes it: letters, digits and
/// `!#$%&'*+-.^_`|~`) is `lower` (lower-case letters and `-`) in any case. Eight bytes
/// are compared at a time (the last eight overlapping the word before them): a token's
/// byte with its 0x20 bit set is a lower-case letter only if it was that letter in either
/// case, and `-` only if it was `-`. `[u8]`'s `eq_ignore_ascii_case` goes byte by byte,
/// and the names a forwarded head carries cost 2,000 instructions a request that way.
pub(crate) fn token_is(name: &[u8], lower: &[u8]) -> bool {
    debug_assert!(lower.iter().all(|b| b.is_ascii_lowercase() || *b == b'-'));
    const CASE: u64 = 0x2020_2020_2020_2020;
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    if n < 8 {
        return name.iter().zip(lower).all(|(x, y)| x | 0x20 == *y);
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    (0..n / 8).all(|i| word(name, 8 * i) | CASE == word(lower, 8 * i))
        && word(name, n - 8) | CASE == word(lower, n - 8)
}

/// Most sidecars a request may pass: the first forward plus one re-route.
pub const MAX_HOPS: u8 = 2;

const PREFIX: &str = "x-understudy-";

/// Routing facts a request carried in from a peer (or none, from a client).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inbound {
    /// The pod the sending sidecar meant the request for.
    pub for_pod: Option<String>,
    /// Sidecars passed so far (0 from a client).
    pub hops: u8,
    /// What an earlier sidecar left of the request's hold deadline.
    pub hold: Option<Duration>,
}

impl Inbound {
    /// A request's routing facts: the claims `read` off its head by the HTTP/1 engine, or
    /// else those in `headers`, honoured under the rule in the module docs when the request
    /// is `trusted` to come from a sidecar. Every `x-understudy-*` header left in `headers`
    /// is removed either way.
    pub fn of(headers: &mut HeaderMap, read: Option<Claims>, trusted: bool) -> Inbound {
        // A client's request carries none: one pass over the names, and nothing built.
        if read.is_none() && !headers.keys().any(is_internal) {
            return Inbound::default();
        }
        let in_map = Claims::take(headers);
        match read.unwrap_or(in_map) {
            claims if trusted => claims.inbound(),
            _ => Inbound::default(),
        }
    }
}

/// Which routing header a line is ([`Claims::routing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Routing {
    /// [`FOR`].
    For,
    /// [`HOPS`].
    Hops,
    /// [`HOLD_MS`].
    HoldMs,
}

/// The routing headers a request came with ([`FOR`], [`HOPS`], [`HOLD_MS`]), the first
/// value of each, apart from its other headers and not yet judged: [`Claims::inbound`]
/// applies the rule in the module docs.
///
/// The HTTP/1 engine reads them off a head as it parses it (`Claims::keep`): those lines
/// never enter the head's map, so they are neither hashed into it nor removed from it
/// again, and the map of a forwarded head stays small enough for the allocator's
/// per-thread cache. A request that carried any brings them to the proxy in its
/// extensions; any other `x-understudy-*` line is in its map, as are all of them in a map
/// from another server (hyper's HTTP/2), and [`Claims::take`] reads and removes those.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claims {
    for_pod: Option<HeaderValue>,
    hops: Option<HeaderValue>,
    hold: Option<HeaderValue>,
}

impl Claims {
    /// Whether a line named by the token `name` (as it came, in any case) is a routing
    /// header, and which ([`Claims::keep`] keeps its value).
    pub(crate) fn routing(name: &[u8]) -> Option<Routing> {
        // (One comparison at most, by length: 16, 17 and 20 bytes.)
        let (which, lower) = match name.len() {
            16 => (Routing::For, FOR_TEXT),
            17 => (Routing::Hops, HOPS_TEXT),
            20 => (Routing::HoldMs, HOLD_MS_TEXT),
            _ => return None,
        };
        token_is(name, lower.as_bytes()).then_some(which)
    }

    /// Keeps `value` as `which`'s, if it is the first line of it (a later one is dropped).
    pub(crate) fn keep(&mut self, which: Routing, value: HeaderValue) {
        let slot = match which {
            Routing::For => &mut self.for_pod,
            Routing::Hops => &mut self.hops,
            Routing::HoldMs => &mut self.hold,
        };
        slot.get_or_insert(value);
    }

    /// The claims as header lines, in the order [`FOR`], [`HOPS`], [`HOLD_MS`] (for a
    /// test's app that shows what it was sent).
    pub fn lines(&self) -> impl Iterator<Item = (HeaderName, &HeaderValue)> {
        [
            (FOR, &self.for_pod),
            (HOPS, &self.hops),
            (HOLD_MS, &self.hold),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.as_ref()?)))
    }

    /// Reads and removes every `x-understudy-*` header of `headers`: the routing ones
    /// (each read as it is removed, a lookup each; the first value of each kept), then any
    /// other of ours.
    pub fn take(headers: &mut HeaderMap) -> Claims {
        // A client's request carries none: one pass over the names, not three lookups.
        if !headers.keys().any(is_internal) {
            return Claims::default();
        }
        let claims = Claims {
            for_pod: headers.remove(&FOR),
            hops: headers.remove(&HOPS),
            hold: headers.remove(&HOLD_MS),
        };
        remove_internal(headers);
        claims
    }

    /// What the claims are worth under the rule in the module docs: a peer's routing facts
    /// when [`FOR`] and [`HOPS`] are both there and well formed, and none otherwise.
    pub fn inbound(self) -> Inbound {
        let for_pod = self
            .for_pod
            .and_then(|v| v.to_str().ok().map(str::to_string));
        let number = |v: Option<HeaderValue>| v?.to_str().ok()?.parse::<u64>().ok();
        let hops = number(self.hops).and_then(|h| u8::try_from(h).ok());
        let hold = number(self.hold).map(Duration::from_millis);
        match (for_pod, hops) {
            (Some(pod), Some(hops)) if !pod.is_empty() && (1..=MAX_HOPS).contains(&hops) => {
                Inbound {
                    for_pod: Some(pod),
                    hops,
                    hold,
                }
            }
            _ => Inbound::default(),
        }
    }
}

/// Whether `name` is one of the sidecars' own (`x-understudy-*`).
fn is_internal(name: &HeaderName) -> bool {
    name.as_str().starts_with(PREFIX)
}

/// How many lines [`add_forwarded`] can add: `X-Forwarded-For`, `-Proto`, `-Host` and `Via`.
pub(crate) const FORWARDING: usize = 4;

/// Whether a line named by the token `name` (as it came, in any case) is one of those
/// [`add_forwarded`] adds when a head has none (it edits or keeps one that is there: no
/// new line).
pub(crate) fn is_forwarding_name(name: &[u8]) -> bool {
    // (One comparison at most, by length.)
    let lower = match name.len() {
        3 => "via",
        15 => X_FORWARDED_FOR_TEXT,
        16 => X_FORWARDED_HOST_TEXT,
        17 => X_FORWARDED_PROTO_TEXT,
        _ => return false,
    };
    token_is(name, lower.as_bytes())
}

/// How many lines [`add_forwarded`] will add to `headers` at most: the room to reserve for
/// them, so that the map grows once if at all. (Reserving for all four whatever the head
/// carries would grow a forwarded head's map past the allocator's per-thread cache.)
pub fn forwarding_room(headers: &HeaderMap) -> usize {
    let there = headers
        .keys()
        .filter(|k| is_forwarding_name(k.as_str().as_bytes()))
        .count();
    FORWARDING.saturating_sub(there)
}

fn remove_internal(headers: &mut HeaderMap) {
    remove_where(headers, is_internal);
}

/// Removes every field of `headers` whose name `gone` picks.
fn remove_where(headers: &mut HeaderMap, gone: impl Fn(&HeaderName) -> bool) {
    let names: Vec<HeaderName> = headers.keys().filter(|k| gone(k)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// Removes from a request's trailers what no trailer may carry on (RFC 9110 section 6.5.1):
/// understudy's own `x-understudy-*` fields (the routing and fencing facts come from a
/// sidecar, in the head alone), framing (`Content-Length`, `Transfer-Encoding`), `Host`, and
/// the hop-by-hop fields and `Expect` that [`strip_hop_by_hop`] takes off a head. An app
/// that merges trailers into the head could otherwise be handed a fencing token, a length or
/// a host by the client. The rest pass: what they mean is the app's business.
pub fn strip_request_trailers(trailers: &mut HeaderMap) {
    remove_where(trailers, |name| {
        is_internal(name)
            || hop_by_hop_bit(name).is_some()
            || name == header::CONTENT_LENGTH
            || name == header::HOST
    });
}

/// True for an HTTP/1.1 `Upgrade` request or a `CONNECT`.
pub fn is_upgrade(method: &Method, version: Version, headers: &HeaderMap) -> bool {
    if method == Method::CONNECT {
        return true;
    }
    version == Version::HTTP_11
        && headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && !only_h2c(headers)
}

/// Whether every protocol an `Upgrade` asks for is `h2c`: such a request is served over
/// HTTP/1.1 with its `Upgrade` removed, as RFC 9113 lets a server do and Envoy does. Passed
/// on, an app that switched would carry HTTP/2 requests in a tunnel the sidecar never looks
/// into (no `x-understudy-*` removed, no fencing: "h2c smuggling"); the data port takes
/// HTTP/2 by prior knowledge instead.
fn only_h2c(headers: &HeaderMap) -> bool {
    let mut protocols = headers
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
        .peekable();
    protocols.peek().is_some() && protocols.all(|p| p.eq_ignore_ascii_case(b"h2c"))
}

/// The tokens of the `Connection` header lines, trimmed.
pub(crate) fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether a request's `TE` accepts trailers (`TE: trailers`).
pub(crate) fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

/// Removes hop-by-hop headers, including those named in `Connection`, and `Expect`. `te:
/// trailers` is kept (gRPC needs it end to end). With `keep_upgrade`, `Upgrade` survives and
/// `Connection: upgrade` is set again, so that an upgrade can pass through.
///
/// `Expect` is the sidecar's to answer, as nginx and Envoy do: it sends `100 Continue` when
/// it first reads the body and then sends the body on at once, never waiting for the app's.
/// Passed on, it would tell the app to wait for a body that is already on its way: an app
/// that then answered early (a `417`, a redirect) without reading the body would read the
/// body as the next request on the connection the sidecar keeps for reuse.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Which of them the message carries, in one pass over the names: most carry none, and a
    // response usually `Connection` alone. A removal by name hashes the name, so only those
    // present are removed. (A name listed in `Connection` needs `Connection` itself.)
    let present = headers
        .keys()
        .filter_map(hop_by_hop_bit)
        .fold(0u16, |bits, bit| bits | bit);
    if present == 0 {
        return;
    }
    let has = |name: &HeaderName| hop_by_hop_bit(name).is_some_and(|bit| present & bit != 0);
    // The names `Connection` lists, removed by name as each value is read: a parsed value is
    // a view of the message's head (its copy usually costs a count, not an allocation), and
    // a name looked up as `&str` is not copied either. `Connection` itself goes below, with every
    // value: removing it here would end the walk over its values early.
    if has(&header::CONNECTION) {
        let mut i = 0;
        while let Some(value) = headers.get_all(header::CONNECTION).iter().nth(i).cloned() {
            i += 1;
            let tokens = value.to_str().unwrap_or("").split(',').map(str::trim);
            for t in tokens.filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("connection")) {
                // One of the names above that the message does not carry (`keep-alive`, on
                // nginx's every response) is not looked up.
                let absent = hop_by_hop_text_bit(t).is_some_and(|bit| present & bit == 0);
                let kept = keep_upgrade && t.eq_ignore_ascii_case("upgrade");
                if !(absent || kept) {
                    headers.remove(t);
                }
            }
        }
    }
    let trailers_ok = has(&header::TE) && accepts_trailers(headers);
    for name in HOP_BY_HOP.iter().filter(|name| has(name)) {
        headers.remove(name);
    }
    if !keep_upgrade {
        if has(&header::UPGRADE) {
            headers.remove(header::UPGRADE);
        }
    } else if has(&header::UPGRADE) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if trailers_ok {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if has(&header::EXPECT) {
        headers.remove(header::EXPECT);
    }
}

/// The hop-by-hop headers that never pass (`Upgrade` aside, which may). (`static`, as
/// [`KNOWN`] is.)
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// For one of the headers [`strip_hop_by_hop`] deals with, its bit: its position in
/// [`HOP_BY_HOP`], `Upgrade`'s after them, then `Expect`'s. (A match on the text, which compiles to a
/// switch on its length: a walk comparing names cost more than the removals it saved.)
fn hop_by_hop_bit(name: &HeaderName) -> Option<u16> {
    hop_by_hop_text_bit(name.as_str())
}

/// [`hop_by_hop_bit`] of a name in lower case (any other text: `None`).
fn hop_by_hop_text_bit(name: &str) -> Option<u16> {
    let position = match name {
        "connection" => 0,
        "te" => 1,
        "trailer" => 2,
        "transfer-encoding" => 3,
        "proxy-authenticate" => 4,
        "proxy-authorization" => 5,
        "keep-alive" => 6,
        "proxy-connection" => 7,
        "upgrade" => HOP_BY_HOP.len(),
        "expect" => HOP_BY_HOP.len() + 1,
        _ => return None,
    };
    Some(1 << position)
}

/// Adds the forwarding headers: appends the client to `X-Forwarded-For`, sets
/// `X-Forwarded-Proto` and `X-Forwarded-Host` unless an earlier proxy did, and appends to
/// `Via`. `host` is the request's `Host` header or HTTP/2 authority.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: SocketAddr,
    version: Version,
    host: Option<HeaderValue>,
) {
    // The address written on the stack, and the value built in one allocation.
    let mut room = [0u8; 64];
    let ip = match client.ip().to_canonical() {
        // By hand: `Display` goes through the formatting machinery octet by octet, which
        // cost about 3 % of a forwarded request's instructions.
        IpAddr::V4(v4) => ipv4_text(v4, &mut room),
        v6 => {
            let mut w = &mut room[..];
            // (An IPv6 address takes at most 45 characters: it fits.)
            let _ = write!(w, "{v6}");
            let left = w.len();
            &room[..room.len() - left]
        }
    };
    // Each name looked up once (an entry), not once to read and again to write.
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Occupied(mut prior) => {
            let joined = match prior.get().to_str() {
                Ok(prior) if !prior.trim().is_empty() => {
                    let mut v = Vec::with_capacity(prior.len() + 2 + ip.len());
                    v.extend_from_slice(prior.as_bytes());
                    v.extend_from_slice(b", ");
                    v.extend_from_slice(ip);
                    HeaderValue::from_maybe_shared(Bytes::from(v))
                }
                _ => HeaderValue::from_bytes(ip),
            };
            if let Ok(v) = joined {
                prior.insert(v);
            }
        }
        Entry::Vacant(none) => {
            if let Ok(v) = HeaderValue::from_bytes(ip) {
                none.insert(v);
            }
        }
    }
    headers
        .entry(X_FORWARDED_PROTO)
        .or_insert_with(|| HeaderValue::from_static("http"));
    if let (Entry::Vacant(none), Some(v)) = (headers.entry(X_FORWARDED_HOST), host) {
        none.insert(v);
    }
    add_via(headers, version);
}

/// `ip` in dotted decimal, as `Display` writes it, into `room`: the bytes written.
fn ipv4_text(ip: Ipv4Addr, room: &mut [u8; 64]) -> &[u8] {
    let mut n = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            room[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            room[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            room[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        room[n] = b'0' + octet % 10;
        n += 1;
    }
    &room[..n]
}

/// Appends this sidecar to `Via`, on requests and responses alike (RFC 9110 §7.6.3);
/// `version` is that of the message as it was received.
pub fn add_via(headers: &mut HeaderMap, version: Version) {
    let via = match version {
        Version::HTTP_2 => "2 understudy",
        Version::HTTP_10 => "1.0 understudy",
        _ => "1.1 understudy",
    };
    headers.append(header::VIA, HeaderValue::from_static(via));
}

/// The value of [`HOPS`]: a constant for the counts a request can carry (one allocation
/// less on every forward).
pub(crate) fn hops_value(hops: u8) -> HeaderValue {
    match hops {
        1 => HeaderValue::from_static("1"),
        2 => HeaderValue::from_static("2"),
        n => HeaderValue::from(u16::from(n)),
    }
}

/// Header value from a string that came from our own configuration or the Lease; falls back
/// to an empty value rather than failing a request over an odd pod name.
pub fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests;

//! The PROXY protocol, version 2 (HAProxy's binary header): how a connection handed from one
//! sidecar to another says where it really came from, and, towards an app that asks for it
//! (`--proxy-protocol`), who the client is.
//!
//! Between sidecars the header carries one TLV of understudy's own ([`HAND_OFF`], in the
//! range the specification leaves to applications): the pod the connection is meant for,
//! the epoch under which the sender saw it lead, the hops so far, which listener the client
//! reached (so that the leader hands it to the matching upstream) and what is left of the
//! hold deadline. Who may send one is decided
//! elsewhere ([`super`]); this module only writes and reads bytes.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The twelve bytes every version 2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// TLV type of understudy's hand-off facts (`PP2_TYPE_MIN_CUSTOM` is 0xE0).
pub const HAND_OFF: u8 = 0xE5;

/// The hand-off TLV's own version: 2 = {version, hops, listener u16, hold ms u32, epoch u64,
/// pod name}.
const HAND_OFF_VERSION: u8 = 2;

/// The hand-off TLV's bytes before the pod name.
const HAND_OFF_FIXED: usize = 1 + 1 + 2 + 4 + 8;

/// The longest header accepted: addresses and a few TLVs, far below the format's 64 KiB.
pub const MAX_LEN: usize = 16 + 1024;

/// The facts a sidecar passes on with a connection it hands to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandOff {
    /// The pod the connection is meant for.
    pub for_pod: String,
    /// Sidecars passed so far, this one included.
    pub hops: u8,
    /// Which of the sidecar's listeners the client reached (0 for `--listen`, then each
    /// `--tcp-listen` in order), which picks the leader's upstream.
    pub listener: u16,
    /// What is left of the first sidecar's hold deadline.
    pub hold: Duration,
    /// The epoch (`leaseTransitions`) under which the sender saw `for_pod` lead: a receiver
    /// whose own view is older waits for it to catch up instead of sending the connection
    /// back.
    pub epoch: u64,
}

/// A parsed header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The client and the address it connected to; `None` for a `LOCAL` header or an
    /// address family other than TCP over IPv4/IPv6.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// understudy's TLV, when present.
    pub hand_off: Option<HandOff>,
}

/// Why bytes are not a header this sidecar accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The first twelve bytes are not the signature.
    #[error("not a PROXY protocol v2 header")]
    Signature,
    /// Version other than 2, or a command other than LOCAL and PROXY.
    #[error("PROXY header: version/command byte {0:#04x}")]
    Version(u8),
    /// The declared length is over [`MAX_LEN`].
    #[error("PROXY header: {0} bytes declared, at most {MAX_LEN} accepted")]
    TooLong(usize),
    /// The address block is shorter than its family needs, or a TLV runs past the end.
    #[error("PROXY header: {0}")]
    Malformed(&'static str),
}

/// The header for a connection from `client` to `to`, with `hand_off` when given. Mixed
/// families are written as IPv6 (IPv4-mapped).
pub fn encode(client: SocketAddr, to: SocketAddr, hand_off: Option<&HandOff>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21); // version 2, PROXY
    let (src, dst) = (client.ip(), to.ip());
    let body_start;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11); // TCP over IPv4
            out.extend_from_slice(&[0, 0]);
            body_start = out.len();
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => {
            out.push(0x21); // TCP over IPv6
            out.extend_from_slice(&[0, 0]);
            body_start = out.len();
            out.extend_from_slice(&v6(src).octets());
            out.extend_from_slice(&v6(dst).octets());
        }
    }
    out.extend_from_slice(&client.port().to_be_bytes());
    out.extend_from_slice(&to.port().to_be_bytes());
    if let Some(h) = hand_off {
        let pod = h.for_pod.as_bytes();
        let len = HAND_OFF_FIXED + pod.len();
        out.push(HAND_OFF);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.push(HAND_OFF_VERSION);
        out.push(h.hops);
        out.extend_from_slice(&h.listener.to_be_bytes());
        let ms = u32::try_from(h.hold.as_millis()).unwrap_or(u32::MAX);
        out.extend_from_slice(&ms.to_be_bytes());
        out.extend_from_slice(&h.epoch.to_be_bytes());
        out.extend_from_slice(pod);
    }
    let len = (out.len() - body_start) as u16;
    out[body_start - 2..body_start].copy_from_slice(&len.to_be_bytes());
    out
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Whether `prefix` (what has arrived so far) could still be the start of a header.
pub fn may_start(prefix: &[u8]) -> bool {
    let n = prefix.len().min(SIGNATURE.len());
    prefix[..n] == SIGNATURE[..n]
}

/// Reads a header from the start of `buf`: `Ok(None)` while more bytes are needed, else the
/// header and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, HeaderError> {
    if !may_start(buf) {
        return Err(HeaderError::Signature);
    }
    if buf.len() < 16 {
        return Ok(None);
    }
    let version = buf[12];
    if version != 0x20 && version != 0x21 {
        return Err(HeaderError::Version(version));
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if 16 + len > MAX_LEN {
        return Err(HeaderError::TooLong(16 + len));
    }
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let local = version == 0x20;
    let (addresses, rest) = match buf[13] {
        0x11 => {
            let b = body
                .get(..12)
                .ok_or(HeaderError::Malformed("IPv4 address block too short"))?;
            let ip = |o: usize| IpAddr::from([b[o], b[o + 1], b[o + 2], b[o + 3]]);
            let port = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
            let pair = (
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            );
            (Some(pair), &body[12..])
        }
        0x21 => {
            let b = body
                .get(..36)
                .ok_or(HeaderError::Malformed("IPv6 address block too short"))?;
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[o..o + 16]);
                Ipv6Addr::from(a).to_canonical()
            };
            let port = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
            let pair = (
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            );
            (Some(pair), &body[36..])
        }
        // UNSPEC, UDP, UNIX: no address this sidecar can use; TLVs are not read either.
        _ => (None, &[][..]),
    };
    let hand_off = tlvs(rest)?;
    let header = Header {
        addresses: addresses.filter(|_| !local),
        hand_off,
    };
    Ok(Some((header, 16 + len)))
}

fn tlvs(mut rest: &[u8]) -> Result<Option<HandOff>, HeaderError> {
    let mut found = None;
    while !rest.is_empty() {
        if rest.len() < 3 {
            return Err(HeaderError::Malformed("TLV header cut short"));
        }
        let kind = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let value = rest
            .get(3..3 + len)
            .ok_or(HeaderError::Malformed("TLV runs past the header"))?;
        if kind == HAND_OFF {
            found = Some(hand_off(value)?);
        }
        rest = &rest[3 + len..];
    }
    Ok(found)
}

fn hand_off(v: &[u8]) -> Result<HandOff, HeaderError> {
    if v.len() < HAND_OFF_FIXED || v[0] != HAND_OFF_VERSION {
        return Err(HeaderError::Malformed(
            "hand-off TLV: unknown version or too short",
        ));
    }
    let for_pod = std::str::from_utf8(&v[HAND_OFF_FIXED..])
        .map_err(|_| HeaderError::Malformed("hand-off TLV: pod name not UTF-8"))?;
    Ok(HandOff {
        for_pod: for_pod.to_string(),
        hops: v[1],
        listener: u16::from_be_bytes([v[2], v[3]]),
        hold: Duration::from_millis(u64::from(u32::from_be_bytes([v[4], v[5], v[6], v[7]]))),
        epoch: u64::from_be_bytes(v[8..16].try_into().expect("eight bytes")),
    })
}

#[cfg(test)]
mod tests;

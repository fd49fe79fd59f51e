//! WebSocket throughput for `bench/run`: an echo server (the app behind the proxies) and a
//! load generator (the clients), so that understudy's upgrade path is measured beside
//! HAProxy's on the same load. A yardstick's tool, not a WebSocket implementation anyone
//! should deploy: binary and close frames only, no fragmentation, no extensions.
//!
//! - `understudy-bench-ws echo LISTEN_ADDR`: answers each `Upgrade: websocket` request with
//!   `101 Switching Protocols` (and the right `Sec-WebSocket-Accept`), then sends each message
//!   back as it came.
//! - `understudy-bench-ws load ADDR CONNECTIONS SECONDS BYTES`: opens CONNECTIONS WebSockets
//!   to ADDR, then on each sends a message of BYTES bytes, waits for its echo, checks it and
//!   sends the next, until SECONDS have passed (a closed loop, like wrk's). Prints one line:
//!   `RESULT messages=N duration_us=D errors=E p50=US p99=US p999=US`. Every wait is bounded:
//!   a connection that stalls for 5 s counts an error and stops.
#![forbid(unsafe_code)]

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

/// RFC 6455's GUID, hashed with the client's key for `Sec-WebSocket-Accept`.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The load's key (RFC 6455's own example) and the accept it must come back with.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// The longest any single wait may take.
const STALL: Duration = Duration::from_secs(5);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let done = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["echo", listen] => rt.block_on(echo(listen)),
        ["load", addr, conns, seconds, bytes] => {
            match (conns.parse(), seconds.parse(), bytes.parse()) {
                (Ok(conns), Ok(seconds), Ok(bytes)) => {
                    rt.block_on(load(addr, conns, seconds, bytes))
                }
                _ => Err(io::Error::other(
                    "CONNECTIONS, SECONDS and BYTES are numbers",
                )),
            }
        }
        _ => Err(io::Error::other(
            "usage: understudy-bench-ws echo LISTEN_ADDR | load ADDR CONNECTIONS SECONDS BYTES",
        )),
    };
    if let Err(e) = done {
        eprintln!("understudy-bench-ws: {e}");
        std::process::exit(1);
    }
}

/// `Sec-WebSocket-Accept` for `key`.
fn accept_for(key: &str) -> String {
    let digest = sha1_smol::Sha1::from(format!("{key}{GUID}"))
        .digest()
        .bytes();
    base64(&digest)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads into `buf` until it holds a head (up to its empty line); the head's length.
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(at + 4);
        }
        if buf.len() > 16 * 1024 {
            return Err(io::Error::other("head too large"));
        }
        if timeout(STALL, s.read_buf(buf)).await?? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// The value of header `name` in `head`, if there.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// One frame at the start of a buffer.
struct Frame {
    opcode: u8,
    /// Where its payload starts, and its length.
    start: usize,
    len: usize,
    mask: Option<[u8; 4]>,
}

/// The frame `buf` starts with, once all of it is there.
fn frame(buf: &[u8]) -> Option<Frame> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (mut len, mut start) = (usize::from(b1 & 0x7f), 2);
    if len == 126 {
        len = usize::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?));
        start = 4;
    } else if len == 127 {
        len = usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?;
        start = 10;
    }
    let mask = if b1 & 0x80 != 0 {
        start += 4;
        Some(buf.get(start - 4..start)?.try_into().ok()?)
    } else {
        None
    };
    (buf.len() >= start + len).then_some(Frame {
        opcode: b0 & 0x0f,
        start,
        len,
        mask,
    })
}

/// A whole frame (FIN set) of `opcode` carrying `payload`, masked with `mask` if given.
fn encode(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    let masked = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(masked | n as u8),
        n @ 126..=0xffff => {
            out.push(masked | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(masked | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
}

async fn echo(listen: &str) -> io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (s, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = echo_one(s).await;
        });
    }
}

async fn echo_one(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(4096);
    let n = read_head(&mut s, &mut buf).await?;
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    let Some(key) = header(&head, "sec-websocket-key") else {
        s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await?;
        return Ok(());
    };
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
         sec-websocket-accept: {}\r\n\r\n",
        accept_for(key)
    );
    s.write_all(answer.as_bytes()).await?;
    buf.drain(..n);
    let mut out = Vec::with_capacity(4096);
    let mut payload = Vec::new();
    loop {
        while let Some(f) = frame(&buf) {
            payload.clear();
            payload.extend_from_slice(&buf[f.start..f.start + f.len]);
            if let Some(key) = f.mask {
                payload
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b ^= key[i % 4]);
            }
            encode(f.opcode, &payload, None, &mut out);
            buf.drain(..f.start + f.len);
            if f.opcode == 8 {
                s.write_all(&out).await?;
                return Ok(());
            }
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        if s.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// What one connection of the load did.
#[derive(Default)]
struct Tally {
    messages: u64,
    errors: u64,
    /// Each message's round trip, in microseconds.
    latencies: Vec<u32>,
}

async fn load(addr: &str, conns: usize, seconds: u64, bytes: usize) -> io::Result<()> {
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..conns)
        .map(|i| {
            let addr = addr.to_string();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                if let Err(e) = converse(&addr, i, bytes, until, &mut tally).await {
                    if tally.errors == 0 {
                        eprintln!("connection {i}: {e}");
                    }
                    tally.errors += 1;
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.map_err(io::Error::other)?;
        all.messages += t.messages;
        all.errors += t.errors;
        all.latencies.extend(t.latencies);
    }
    let duration = start.elapsed();
    all.latencies.sort_unstable();
    let at = |q: f64| {
        let i =
            ((all.latencies.len() as f64 * q) as usize).min(all.latencies.len().saturating_sub(1));
        all.latencies.get(i).copied().unwrap_or(0)
    };
    println!(
        "RESULT messages={} duration_us={} errors={} p50={} p99={} p999={}",
        all.messages,
        duration.as_micros(),
        all.errors,
        at(0.5),
        at(0.99),
        at(0.999)
    );
    Ok(())
}

/// One WebSocket: the handshake, then messages until `until`, then a close.
async fn converse(
    addr: &str,
    i: usize,
    bytes: usize,
    until: Instant,
    tally: &mut Tally,
) -> io::Result<()> {
    let mut s = timeout(STALL, TcpStream::connect(addr)).await??;
    s.set_nodelay(true)?;
    let hello = format!(
        "GET /ws HTTP/1.1\r\nhost: {addr}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-key: {KEY}\r\nsec-websocket-version: 13\r\n\r\n"
    );
    s.write_all(hello.as_bytes()).await?;
    let mut buf = Vec::with_capacity(bytes + 64);
    let n = read_head(&mut s, &mut buf).await?;
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    if !head.starts_with("HTTP/1.1 101") || header(&head, "sec-websocket-accept") != Some(ACCEPT) {
        return Err(io::Error::other(format!(
            "no WebSocket: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    buf.drain(..n);
    // Each connection's message is its own, so that an echo sent to another would show.
    let payload: Vec<u8> = (0..bytes).map(|k| (k + i) as u8).collect();
    let mut out = Vec::with_capacity(bytes + 14);
    let mask = (i as u32).wrapping_mul(0x9e37_79b9).to_be_bytes();
    encode(2, &payload, Some(mask), &mut out);
    while Instant::now() < until {
        let sent = Instant::now();
        timeout(STALL, s.write_all(&out)).await??;
        let f = loop {
            if let Some(f) = frame(&buf) {
                break f;
            }
            if timeout(STALL, s.read_buf(&mut buf)).await?? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        };
        if f.opcode != 2 || f.mask.is_some() || buf[f.start..f.start + f.len] != payload[..] {
            return Err(io::Error::other("the echo differs from the message"));
        }
        buf.drain(..f.start + f.len);
        tally.messages += 1;
        tally
            .latencies
            .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    let mut close = Vec::new();
    encode(8, &[], Some(mask), &mut close);
    timeout(STALL, s.write_all(&close)).await??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_for_rfc_6455s_example_key_is_its_example_accept() {
        assert_eq!(accept_for(KEY), ACCEPT);
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }

    #[test]
    fn frames_round_trip_masked_and_not_at_every_length_form() {
        for len in [0, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..len).map(|k| k as u8).collect();
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut out = Vec::new();
                encode(2, &payload, mask, &mut out);
                assert!(frame(&out[..out.len() - 1]).is_none());
                let f = frame(&out).unwrap();
                let mut got = out[f.start..f.start + f.len].to_vec();
                if let Some(key) = f.mask {
                    got.iter_mut()
                        .enumerate()
                        .for_each(|(i, b)| *b ^= key[i % 4]);
                }
                assert_eq!((f.opcode, f.mask, got), (2, mask, payload.clone()));
            }
        }
    }
}

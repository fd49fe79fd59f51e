//! The HTTP/1 framing guard: finds request heads that carry both `Content-Length` and
//! `Transfer-Encoding`, so that the server can refuse them (400, connection closed) instead of
//! letting hyper re-frame them as chunked (RFC 9112 §6.3 allows either; a request smuggled
//! past a front end that trusted `Content-Length` is what such a head usually is). It also
//! finds a bare LF (without its CR) ending the request line or a header line: RFC 9112 §2.2
//! lets a recipient accept it, but front ends disagree on it, which is what smuggling feeds
//! on, so it is refused the same way.
//!
//! hyper drops the `Content-Length` without a trace, so the check has to sit below it, on the
//! bytes the client sends. [`Framing`] is a sans-IO scanner: it is fed every chunk read from
//! the connection, in order, and follows request boundaries the way hyper's HTTP/1 parser
//! does (heads with CRLF line ends, then a `Content-Length` body, a chunked body
//! with extensions and trailers, or none). It matches only header names at line starts and
//! only counts body bytes of a known length, without copying or allocating.
//!
//! It never refuses anything else. Whenever it is not sure to frame a request exactly as
//! hyper will, it stands aside for the rest of the connection and hyper alone decides: bytes
//! hyper rejects (it then closes the connection), an invalid `Content-Length`, an upgrade or
//! `CONNECT` (what follows may not be HTTP/1), and HTTP/2 with prior knowledge.

use memchr::memchr;

/// Follows the requests on one HTTP/1 connection; see the [module docs](self).
#[derive(Debug, Default)]
pub struct Framing {
    state: State,
    head: Head,
    /// The last byte taken in a head was a CR.
    cr: bool,
}

/// Where in the request stream the next byte falls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Before a request line; empty lines are skipped there, as the parser does.
    #[default]
    Start,
    /// After a CR before the request line.
    StartLf,
    /// The method: its first bytes, and how many there were (more than 7 is neither
    /// `CONNECT` nor `PRI`).
    Method {
        seen: [u8; 7],
        len: u8,
    },
    /// The rest of the request line, or of a header line of no interest.
    Line,
    /// The start of a header line.
    LineStart,
    /// After a CR at the start of a header line: the LF ends the head.
    LineStartLf,
    /// A header line whose first `at` bytes match `name`.
    Header {
        name: Name,
        at: u8,
    },
    /// A `Content-Length` value: digits so far, whether any, and whether they ended.
    Length {
        value: u64,
        digits: bool,
        ended: bool,
    },
    /// A body of a known length: the bytes left.
    Body(u64),
    /// Chunked body states, as in hyper's decoder: the first digit of a chunk size,
    ChunkStart,
    /// more digits (the size so far),
    ChunkSize(u64),
    /// whitespace after the size,
    ChunkSpace(u64),
    /// an extension,
    ChunkExtension(u64),
    /// the LF of the size line,
    ChunkSizeLf(u64),
    /// chunk data (the bytes left),
    ChunkData(u64),
    /// the CR and LF after the data,
    ChunkDataCr,
    ChunkDataLf,
    /// after the last chunk: a CR (the end) or a trailer line,
    EndCr,
    /// a trailer line and its LF,
    Trailer,
    TrailerLf,
    /// and the LF that ends the body.
    EndLf,
    /// Not following any more: hyper alone decides.
    Aside,
}

/// The header names the guard looks for, with their colon: the parser accepts no space
/// before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Name {
    ContentLength,
    TransferEncoding,
    Upgrade,
}

impl Name {
    fn text(self) -> &'static [u8] {
        match self {
            Name::ContentLength => b"content-length:",
            Name::TransferEncoding => b"transfer-encoding:",
            Name::Upgrade => b"upgrade:",
        }
    }
}

/// What the head being read said about framing so far.
#[derive(Clone, Copy, Debug, Default)]
struct Head {
    /// A `Content-Length` header was seen.
    has_length: bool,
    /// Its value, if valid (repeated, the same value).
    length: Option<u64>,
    /// A `Content-Length` value the parser will refuse.
    bad_length: bool,
    /// A `Transfer-Encoding` header was seen: the body is chunked, or the parser refuses it.
    chunked: bool,
    /// An `Upgrade` header or `CONNECT`: what follows may not be HTTP/1.
    upgrade: bool,
}

impl Framing {
    /// A new connection.
    pub fn new() -> Framing {
        Framing::default()
    }

    /// Whether the scanner has stood aside for good (it then only returns `None`).
    pub fn is_aside(&self) -> bool {
        self.state == State::Aside
    }

    /// Follows `bytes`, the next bytes from the client. Returns the index in `bytes` of the
    /// colon that ends the second of `Content-Length` and `Transfer-Encoding` in one head, or
    /// of a bare LF ending a line of a head: that head must be refused. The scanner then
    /// stands aside.
    pub fn scan(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            // The states that take many bytes at once.
            match &mut self.state {
                State::Aside => return None,
                State::Line => match memchr(b'\n', rest) {
                    Some(at) => {
                        let cr = match at {
                            0 => self.cr,
                            _ => rest[at - 1] == b'\r',
                        };
                        if !cr {
                            self.state = State::Aside;
                            return Some(i + at);
                        }
                        i += at + 1;
                        self.cr = false;
                        self.state = State::LineStart;
                        continue;
                    }
                    None => {
                        self.cr = rest.last() == Some(&b'\r');
                        return None;
                    }
                },
                State::Body(left) | State::ChunkData(left) => {
                    let n = usize::try_from(*left).map_or(rest.len(), |l| l.min(rest.len()));
                    *left -= n as u64;
                    i += n;
                    if *left == 0 {
                        self.state = match self.state {
                            State::Body(_) => State::Start,
                            _ => State::ChunkDataCr,
                        };
                    }
                    continue;
                }
                _ => {}
            }
            let b = rest[0];
            if self.step(b) {
                self.state = State::Aside;
                return Some(i);
            }
            self.cr = b == b'\r';
            i += 1;
        }
        None
    }

    /// Takes one byte; `true` if it completes a head's second framing header.
    fn step(&mut self, b: u8) -> bool {
        use State::*;
        self.state = match self.state {
            Start => match b {
                b'\n' => Start,
                b'\r' => StartLf,
                _ => Method {
                    seen: [b, 0, 0, 0, 0, 0, 0],
                    len: 1,
                },
            },
            StartLf => match b {
                b'\n' => Start,
                _ => Aside,
            },
            Method { mut seen, len } => match b {
                b' ' => {
                    let method = seen.get(..usize::from(len)).unwrap_or_default();
                    self.head.upgrade = method == b"CONNECT";
                    // HTTP/2 with prior knowledge ("PRI * HTTP/2.0").
                    if method == b"PRI" { Aside } else { Line }
                }
                b'\r' | b'\n' => Aside,
                _ => {
                    if let Some(slot) = seen.get_mut(usize::from(len)) {
                        *slot = b;
                    }
                    Method {
                        seen,
                        len: len.saturating_add(1).min(8),
                    }
                }
            },
            Line => match b {
                b'\n' if !self.cr => return true,
                b'\n' => LineStart,
                _ => Line,
            },
            LineStart => match b.to_ascii_lowercase() {
                b'c' => Header {
                    name: Name::ContentLength,
                    at: 1,
                },
                b't' => Header {
                    name: Name::TransferEncoding,
                    at: 1,
                },
                b'u' => Header {
                    name: Name::Upgrade,
                    at: 1,
                },
                b'\r' => LineStartLf,
                // The empty line that ends the head, without its CR.
                b'\n' => return true,
                _ => Line,
            },
            LineStartLf => match b {
                b'\n' => self.end_head(),
                _ => Aside,
            },
            Header { name, at } => {
                let text = name.text();
                if b == b'\n' {
                    // A name cut short by a bare LF (a CR would have ended the match).
                    return true;
                } else if b.to_ascii_lowercase() != text[usize::from(at)] {
                    Line
                } else if usize::from(at) + 1 < text.len() {
                    Header { name, at: at + 1 }
                } else {
                    match name {
                        Name::ContentLength if self.head.chunked => return true,
                        Name::TransferEncoding if self.head.has_length => return true,
                        Name::ContentLength => {
                            self.head.has_length = true;
                            Length {
                                value: 0,
                                digits: false,
                                ended: false,
                            }
                        }
                        Name::TransferEncoding => {
                            self.head.chunked = true;
                            Line
                        }
                        Name::Upgrade => {
                            self.head.upgrade = true;
                            Line
                        }
                    }
                }
            }
            Length {
                value,
                digits,
                ended,
            } => match b {
                b'0'..=b'9' if !ended => {
                    match value
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    {
                        Some(value) => Length {
                            value,
                            digits: true,
                            ended,
                        },
                        None => {
                            self.head.bad_length = true;
                            Line
                        }
                    }
                }
                b' ' | b'\t' | b'\r' => Length {
                    value,
                    digits,
                    ended: digits || b == b'\r',
                },
                b'\n' if !self.cr => return true,
                b'\n' => {
                    match self.head.length {
                        _ if !digits => self.head.bad_length = true,
                        Some(other) if other != value => self.head.bad_length = true,
                        _ => self.head.length = Some(value),
                    }
                    LineStart
                }
                _ => {
                    self.head.bad_length = true;
                    Line
                }
            },
            // (Taken many bytes at a time in `scan`.)
            Body(left) if left > 1 => Body(left - 1),
            Body(_) => Start,
            ChunkData(left) if left > 1 => ChunkData(left - 1),
            ChunkData(_) => ChunkDataCr,
            ChunkStart => match hex(b) {
                Some(d) => ChunkSize(d),
                None => Aside,
            },
            ChunkSize(size) => match (b, hex(b)) {
                (_, Some(d)) => match size.checked_mul(16) {
                    Some(size) => ChunkSize(size | d),
                    None => Aside,
                },
                (b' ' | b'\t', _) => ChunkSpace(size),
                (b';', _) => ChunkExtension(size),
                (b'\r', _) => ChunkSizeLf(size),
                _ => Aside,
            },
            ChunkSpace(size) => match b {
                b' ' | b'\t' => ChunkSpace(size),
                b';' => ChunkExtension(size),
                b'\r' => ChunkSizeLf(size),
                _ => Aside,
            },
            ChunkExtension(size) => match b {
                b'\r' => ChunkSizeLf(size),
                b'\n' => Aside,
                _ => ChunkExtension(size),
            },
            ChunkSizeLf(size) => match b {
                b'\n' if size == 0 => EndCr,
                b'\n' => ChunkData(size),
                _ => Aside,
            },
            ChunkDataCr => match b {
                b'\r' => ChunkDataLf,
                _ => Aside,
            },
            ChunkDataLf => match b {
                b'\n' => ChunkStart,
                _ => Aside,
            },
            EndCr => match b {
                b'\r' => EndLf,
                _ => Trailer,
            },
            Trailer => match b {
                b'\r' => TrailerLf,
                _ => Trailer,
            },
            TrailerLf => match b {
                b'\n' => EndCr,
                _ => Aside,
            },
            EndLf => match b {
                b'\n' => Start,
                _ => Aside,
            },
            Aside => Aside,
        };
        false
    }

    /// The state after a head: its body, if any.
    fn end_head(&mut self) -> State {
        let head = std::mem::take(&mut self.head);
        if head.upgrade || head.bad_length {
            State::Aside
        } else if head.chunked {
            State::ChunkStart
        } else {
            match head.length {
                Some(n) if n > 0 => State::Body(n),
                _ => State::Start,
            }
        }
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests;

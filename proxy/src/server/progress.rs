//! What counts as an HTTP/2 connection moving: its streams' frames, not its upkeep.
//!
//! The connection layer's [`Activity`] records every byte. On HTTP/2 that lets a client hold
//! a connection, and through a response it reads none of the app's connection behind it,
//! for ever: it need only send a PING now and then (gRPC's keep-alive does), which hyper
//! answers. So the HTTP/2 server measures idleness by the frames that carry requests and
//! responses (HEADERS, CONTINUATION, DATA) either way; PINGs keep no connection open, as
//! they keep none past Envoy's idle timeout either. A client that reads its response,
//! however slowly, keeps data frames going out; one that uploads keeps them coming in.
//!
//! A frame counts by its type alone, whatever its stream, so the frames the server writes
//! are also kept apart: after the shutdown's `GOAWAY` only they count (`sent`), for a
//! hostile client could go on sending frames for streams that do not exist, which the
//! `h2` crate then ignores.

use crate::conn::{Activity, Observe, Observed};

/// The client's connection preface, which comes before its first frame.
const PREFACE_LEN: usize = 24;

/// A server's side of an HTTP/2 connection, from its first byte (the client's preface still
/// to be read), recording in `moved` when any of a stream's frames move either way, and in
/// `sent` when the server writes one.
pub(super) fn progress<S>(inner: S, moved: Activity, sent: Activity) -> Observed<S, Streams> {
    let streams = Streams {
        read: Frames::after(PREFACE_LEN),
        written: Frames::after(0),
        moved,
        sent,
    };
    Observed::new(inner, streams)
}

/// Both directions' frames, and the activities their streams' frames record.
pub(super) struct Streams {
    read: Frames,
    written: Frames,
    moved: Activity,
    sent: Activity,
}

impl Observe for Streams {
    fn read(&mut self, bytes: &[u8]) {
        if self.read.moved(bytes) {
            self.moved.touch();
        }
    }

    fn wrote(&mut self, bytes: &[u8]) {
        if self.written.moved(bytes) {
            self.moved.touch();
            self.sent.touch();
        }
    }
}

/// Where one direction of an HTTP/2 connection is in its frames (RFC 9113 §4.1: a 9-byte
/// header whose first three bytes are the payload's length and fourth its type), enough to
/// tell which bytes belong to a stream's frames.
#[derive(Debug)]
struct Frames {
    /// The frame header being read, and how much of it has come.
    head: [u8; 9],
    have: usize,
    /// Bytes of the current frame's payload (or of the preface) still to come.
    left: usize,
    /// The current frame is a stream's HEADERS, CONTINUATION or DATA.
    carries: bool,
}

impl Frames {
    /// A direction whose first frame comes after `skip` bytes.
    fn after(skip: usize) -> Frames {
        Frames {
            head: [0; 9],
            have: 0,
            left: skip,
            carries: false,
        }
    }

    /// Follows `bytes`, the next that moved: true when any of them belongs to a stream's
    /// frame (its header counted once whole).
    fn moved(&mut self, mut bytes: &[u8]) -> bool {
        let mut carried = false;
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = self.left.min(bytes.len());
                carried |= self.carries;
                self.left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (self.head.len() - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == self.head.len() {
                let [a, b, c, kind, ..] = self.head;
                self.have = 0;
                self.left = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                // DATA 0x0, HEADERS 0x1, CONTINUATION 0x9.
                self.carries = matches!(kind, 0x0 | 0x1 | 0x9);
                carried |= self.carries;
            }
        }
        carried
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame header: `len` bytes of payload, of type `kind`, on stream 1.
    fn head(len: usize, kind: u8) -> Vec<u8> {
        let len = len.to_be_bytes();
        let n = len.len();
        vec![len[n - 3], len[n - 2], len[n - 1], kind, 0, 0, 0, 0, 1]
    }

    #[test]
    fn only_a_streams_frames_count_however_the_bytes_are_cut() {
        // After the preface: SETTINGS, PING, HEADERS, WINDOW_UPDATE, DATA, an empty DATA, PING.
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let mut marks = Vec::new();
        for (len, kind, counts) in [
            (6, 0x4, false),
            (8, 0x6, false),
            (12, 0x1, true),
            (4, 0x8, false),
            (300, 0x0, true),
            (0, 0x0, true),
            (8, 0x6, false),
        ] {
            let start = wire.len();
            wire.extend(head(len, kind));
            wire.extend(std::iter::repeat_n(7u8, len));
            marks.push((start, wire.len(), counts));
        }
        // A byte counts from the last of a stream's frame's header (the type is known then)
        // to the frame's end.
        let counts = |i: usize| marks.iter().any(|&(s, e, c)| c && i >= s + 8 && i < e);
        let any = |from: usize, to: usize| (from..to).any(counts);
        // Every way of cutting the bytes in two pieces.
        for cut in 0..=wire.len() {
            let mut frames = Frames::after(PREFACE_LEN);
            let (a, b) = wire.split_at(cut);
            assert_eq!(frames.moved(a), any(0, cut), "first piece, cut at {cut}");
            assert_eq!(
                frames.moved(b),
                any(cut, wire.len()),
                "second, cut at {cut}"
            );
        }
        // And byte by byte.
        let mut frames = Frames::after(PREFACE_LEN);
        for (i, b) in wire.iter().enumerate() {
            assert_eq!(frames.moved(&[*b]), counts(i), "byte {i}");
        }
    }
}

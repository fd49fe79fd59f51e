//! Header maps and head buffers kept for reuse, a few on each thread.
//!
//! Every request the engine reads and every response it reads from an app or a peer is
//! parsed into a [`HeaderMap`]: two allocations (its index and its entries, about 650 bytes
//! for a head of six lines). The request's map lives until its answer has come back, so with
//! many requests in flight the allocator's per-thread cache (seven blocks of a size) runs
//! dry and the rest take its slow path, there and again when they are freed. A map given
//! back here is cleared (its values dropped, its room kept) and handed to the next head that
//! fits in it.
//!
//! Bounded: at most [`KEPT`] maps a thread, each of at most [`ROOM`] lines; a larger map (a
//! head with many lines) is freed as before.
//!
//! The buffers the engine writes heads into (a request's to its app, a response's to its
//! client) are kept the same way once written ([`buffer`], [`give_back_buffer`]): a head is
//! mostly written in the poll that encoded it, so a few serve a whole thread. At most
//! [`BUFFERS`], each of at most [`BUFFER_ROOM`] bytes.

use std::cell::RefCell;

use bytes::BytesMut;
use http::HeaderMap;

/// The most maps kept on one thread: about as many requests as are in flight at once on a
/// busy sidecar's thread. (Some 40 KiB for heads of a few lines; 170 KiB at the most.)
const KEPT: usize = 64;
/// The most lines a kept map has room for: a browser's request with the forwarding lines
/// added fits (a map of 24 lines is about 2.6 KiB).
const ROOM: usize = 24;

/// The most head buffers kept on one thread.
const BUFFERS: usize = 16;
/// The largest head buffer kept, in bytes: a head of a few lines, with a small first frame of
/// its body behind it (a larger one is freed).
const BUFFER_ROOM: usize = 4 * 1024;

thread_local! {
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    static SPARE_BUFFERS: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `capacity` bytes, to write a head into: the last
/// one kept if it has that room, else a new one. (A kept one has all its room back.)
pub(crate) fn buffer(capacity: usize) -> BytesMut {
    let kept = SPARE_BUFFERS
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten();
    kept.filter(|buf| buf.capacity() >= capacity)
        .unwrap_or_else(|| BytesMut::with_capacity(capacity))
}

/// Gives back a head's buffer once all of it has been written: kept, empty and with all its
/// room again, if it is no larger than [`BUFFER_ROOM`] and the thread keeps fewer than
/// [`BUFFERS`]; else freed.
pub(crate) fn give_back_buffer(mut buf: BytesMut) {
    buf.clear();
    // What was written was advanced past: asking for more room than is left after it takes
    // back the room before it (no allocation; a buffer shared with other bytes cannot).
    if !buf.try_reclaim(buf.capacity() + 1) || buf.capacity() > BUFFER_ROOM {
        return;
    }
    let _ = SPARE_BUFFERS.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < BUFFERS {
            spare.push(buf);
        }
    });
}

/// An empty map with room for at least `capacity` lines: a kept one if the last one kept
/// has that room, else a new one.
pub(crate) fn map(capacity: usize) -> HeaderMap {
    let kept = SPARE
        .try_with(|spare| {
            let mut spare = spare.borrow_mut();
            match spare.last() {
                Some(last) if last.capacity() >= capacity => spare.pop(),
                _ => None,
            }
        })
        .ok()
        .flatten();
    kept.unwrap_or_else(|| HeaderMap::with_capacity(capacity))
}

/// Gives `map` back for a later head: kept (cleared) if it is not too large and the thread
/// keeps fewer than [`KEPT`], else freed. Too large: room for more than [`ROOM`] lines, or
/// more than [`ROOM`] values (a clear keeps the room of a name's repeated values too, and a
/// map hyper built for an HTTP/2 head may hold many of one name in little room).
pub(crate) fn give_back(mut map: HeaderMap) {
    let room = map.capacity();
    if room == 0 || room > ROOM || map.len() > ROOM {
        return;
    }
    map.clear();
    // (After the thread's own keeping has gone, at its exit, the map is simply freed.)
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < KEPT {
            spare.push(map);
        }
    });
}

/// Empties this thread's keeping (for a test: each runs on a thread of its own, and
/// starts from nothing kept).
#[cfg(test)]
pub(crate) fn forget() {
    SPARE.with(|spare| spare.borrow_mut().clear());
    SPARE_BUFFERS.with(|spare| spare.borrow_mut().clear());
}

/// How many maps this thread keeps (for a test).
#[cfg(test)]
pub(crate) fn kept() -> usize {
    SPARE.with(|spare| spare.borrow().len())
}

/// How many head buffers this thread keeps (for a test).
#[cfg(test)]
pub(crate) fn kept_buffers() -> usize {
    SPARE_BUFFERS.with(|spare| spare.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Buf, BufMut};
    use http::header::{HOST, HeaderValue};

    #[test]
    fn a_map_given_back_is_cleared_and_reused() {
        forget();
        let mut m = map(6);
        m.insert(HOST, HeaderValue::from_static("example"));
        let room = m.capacity();
        give_back(m);
        let again = map(room);
        assert!(again.is_empty(), "cleared: {again:?}");
        assert_eq!(again.capacity(), room);
        assert_eq!(kept(), 0, "taken out of the keeping");
    }

    #[test]
    fn a_kept_map_too_small_for_a_head_is_left_for_another() {
        forget();
        give_back(HeaderMap::with_capacity(2));
        let m = map(20);
        assert!(m.capacity() >= 20);
        assert_eq!(kept(), 1, "the small one still kept");
    }

    #[test]
    fn large_maps_and_too_many_are_not_kept() {
        forget();
        give_back(HeaderMap::with_capacity(ROOM * 4));
        give_back(HeaderMap::new());
        // One name many times: little room, many values.
        let mut repeated = HeaderMap::with_capacity(1);
        for i in 0..ROOM + 1 {
            repeated.append(HOST, HeaderValue::from(i));
        }
        assert!(repeated.capacity() <= ROOM);
        give_back(repeated);
        assert_eq!(kept(), 0);
        for _ in 0..KEPT + 10 {
            give_back(HeaderMap::with_capacity(6));
        }
        assert_eq!(kept(), KEPT);
    }

    #[test]
    fn a_written_heads_buffer_is_reused_with_all_its_room() {
        forget();
        let mut buf = buffer(1024);
        let at = buf.as_ptr();
        buf.put_slice(&[b'x'; 300]);
        buf.advance(300);
        give_back_buffer(buf);
        assert_eq!(kept_buffers(), 1);
        let again = buffer(1024);
        assert_eq!(again.as_ptr(), at, "the same allocation");
        assert!(again.is_empty() && again.capacity() >= 1024);
        assert_eq!(kept_buffers(), 0, "taken out of the keeping");
        // A kept one without the room asked for is freed, and a new one made.
        let mut again = again;
        again.put_u8(b'x');
        again.advance(1);
        give_back_buffer(again);
        assert_eq!(kept_buffers(), 1);
        assert!(buffer(BUFFER_ROOM * 2).capacity() >= BUFFER_ROOM * 2);
        assert_eq!(kept_buffers(), 0);
    }

    #[test]
    fn large_buffers_shared_ones_and_too_many_are_not_kept() {
        forget();
        let mut large = BytesMut::with_capacity(BUFFER_ROOM * 2);
        large.put_u8(b'x');
        large.advance(1);
        give_back_buffer(large);
        let mut shared = BytesMut::with_capacity(1024);
        shared.put_slice(b"head");
        let _frozen = shared.split().freeze();
        give_back_buffer(shared);
        assert_eq!(kept_buffers(), 0);
        for _ in 0..BUFFERS + 10 {
            let mut buf = BytesMut::with_capacity(512);
            buf.put_u8(b'x');
            buf.advance(1);
            give_back_buffer(buf);
        }
        assert_eq!(kept_buffers(), BUFFERS);
    }
}

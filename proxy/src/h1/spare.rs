//! Header maps kept for reuse, a few on each thread.
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

use std::cell::RefCell;

use http::HeaderMap;

/// The most maps kept on one thread: about as many requests as are in flight at once on a
/// busy sidecar's thread. (Some 40 KiB for heads of a few lines; 170 KiB at the most.)
const KEPT: usize = 64;
/// The most lines a kept map has room for: a browser's request with the forwarding lines
/// added fits (a map of 24 lines is about 2.6 KiB).
const ROOM: usize = 24;

thread_local! {
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
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
}

/// How many maps this thread keeps (for a test).
#[cfg(test)]
pub(crate) fn kept() -> usize {
    SPARE.with(|spare| spare.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;
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
}

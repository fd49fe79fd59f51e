//! Reading into a message buffer that a waiting connection has let go of.
//!
//! A keep-alive connection waiting for its next message holds no read buffer: a thousand of
//! them would otherwise hold a head's room each, mostly unused. Its next head is read into
//! room on the stack, and only the bytes that came are kept: in an allocation of their size
//! when the buffer was let go (a small one, which the allocator serves from its per-thread
//! cache), else in what is left of the buffer's own. A buffer that still has room is read
//! into directly, and one holding part of a head grows by a head's room.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};

/// Room on the stack for a read into a let-go buffer.
const STACK: usize = 4 * 1024;

/// Reads what `io` has into `buf`, as the module says; `room` is a head's room (at most
/// [`STACK`] of it is read through the stack). Ready with the number of bytes read (0: the
/// peer closed).
pub(crate) fn poll_head<R>(
    io: Pin<&mut R>,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
    room: usize,
) -> Poll<io::Result<usize>>
where
    R: AsyncRead + ?Sized,
{
    let spare = buf.capacity() - buf.len();
    if buf.is_empty() && spare < room / 4 {
        let mut stack = [MaybeUninit::<u8>::uninit(); STACK];
        let mut read = ReadBuf::uninit(&mut stack[..room.min(STACK)]);
        ready!(io.poll_read(cx, &mut read))?;
        buf.extend_from_slice(read.filled());
        return Poll::Ready(Ok(read.filled().len()));
    }
    if spare < room / 4 {
        buf.reserve(room);
    }
    tokio_util::io::poll_read_buf(io, cx, buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn read(io: &mut tokio::io::DuplexStream, buf: &mut BytesMut) -> usize {
        std::future::poll_fn(|cx| poll_head(Pin::new(&mut *io), cx, buf, 4096))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_let_go_buffer_keeps_only_what_came_and_a_partial_head_gets_room() {
        let (mut near, mut far) = tokio::io::duplex(64 * 1024);
        let mut buf = BytesMut::new();
        far.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert_eq!(read(&mut near, &mut buf).await, 16);
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
        assert!(buf.capacity() < 64, "kept {} bytes of room", buf.capacity());
        // The rest of the head: read into room made for it.
        far.write_all(b"host: x\r\n\r\n").await.unwrap();
        assert_eq!(read(&mut near, &mut buf).await, 11);
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
        assert!(buf.capacity() >= 4096);
        // More than the stack's room: the rest waits for the next read.
        let big = vec![b'a'; 6000];
        far.write_all(&big).await.unwrap();
        let mut fresh = BytesMut::new();
        assert_eq!(read(&mut near, &mut fresh).await, 4096);
        assert_eq!(read(&mut near, &mut fresh).await, 6000 - 4096);
        assert_eq!(&fresh[..], &big[..]);
        // A close reads as 0.
        drop(far);
        assert_eq!(read(&mut near, &mut BytesMut::new()).await, 0);
    }
}

//! Zero-copy relaying (`--splice`): bytes move from one socket to the other through a pipe
//! with `splice(2)`, never through user space. Only for plain TCP on both sides (the mTLS
//! peer channel must decrypt); the counters, the activity that the idle timeout reads and
//! half-closes behave as in the buffered relay.
//!
//! Each direction starts buffered, as the buffered relay does (a pipe costs two descriptors
//! and its calls more than a copy of a small message), and moves to splicing for good once
//! one read fills its buffer: HAProxy's `splice-auto` rule. Small requests and short
//! connections cost what they cost without `--splice`; bulk transfers skip the copies.
//!
//! A spliced direction owns a pipe. It fills the pipe from its source only when the pipe is
//! empty, and empties it into its destination before it reads again, so a splice that
//! would block always means the socket is not ready (never the pipe), and the tokio
//! readiness of the socket is what it waits for.

use std::io;
use std::os::fd::OwnedFd;

use prometheus::IntCounter;
use rustix::pipe::{PipeFlags, SpliceFlags, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::conn::Activity;

/// The most one splice moves into a pipe (a pipe's default capacity on Linux).
const CHUNK: usize = 64 * 1024;

/// A direction's buffer until it splices: the buffered relay's size
/// ([`super::RELAY_BUFFER`]); a read that fills it switches the direction to splicing.
const BUFFER: usize = super::RELAY_BUFFER;

/// Who is on one end of a spliced connection.
pub(crate) struct End<'a> {
    /// The socket.
    pub(crate) socket: &'a TcpStream,
    /// Counts the bytes read from it, if they are counted on this end.
    pub(crate) read: Option<&'a IntCounter>,
    /// Counts the bytes written to it, if they are counted on this end.
    pub(crate) written: Option<&'a IntCounter>,
    /// The client connection's activity, if this is the client's end.
    pub(crate) activity: Option<&'a Activity>,
}

/// Relays both ways between `client` and `upstream` until both directions have ended (each
/// passes its source's end on as a half-close), or one fails.
pub(crate) async fn relay(client: End<'_>, upstream: End<'_>) -> io::Result<()> {
    tokio::try_join!(one_way(&client, &upstream), one_way(&upstream, &client))?;
    Ok(())
}

/// Moves bytes from `from` to `to` until `from` ends, then shuts `to` for writing:
/// buffered until a read fills the buffer, spliced from then on.
async fn one_way(from: &End<'_>, to: &End<'_>) -> io::Result<()> {
    let mut buffer = vec![0u8; BUFFER];
    let mut may_splice = true;
    loop {
        let read = ready(from.socket, Interest::READABLE, || {
            from.socket.try_read(&mut buffer)
        })
        .await?;
        if read == 0 {
            return end(to);
        }
        moved_in(from, read);
        let mut sent = 0;
        while sent < read {
            let wrote = ready(to.socket, Interest::WRITABLE, || {
                to.socket.try_write(&buffer[sent..read])
            })
            .await?;
            sent += wrote;
            moved_out(to, wrote);
        }
        if read == BUFFER && may_splice {
            // Bulk: splice from now on (the buffer is not needed any more), if a pipe can be
            // had (out of descriptors: buffered to the end).
            match pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC) {
                Ok(pipe) => {
                    drop(buffer);
                    return spliced(from, to, pipe).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "tcp: no pipe to splice with; buffered");
                    may_splice = false;
                }
            }
        }
    }
}

/// [`one_way`] through `pipe` (its reading end, then its writing end).
async fn spliced(from: &End<'_>, to: &End<'_>, pipe: (OwnedFd, OwnedFd)) -> io::Result<()> {
    let (pipe_out, pipe_in) = pipe;
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    loop {
        let filled = ready(from.socket, Interest::READABLE, || {
            Ok(splice(from.socket, None, &pipe_in, None, CHUNK, flags)?)
        })
        .await?;
        if filled == 0 {
            return end(to);
        }
        moved_in(from, filled);
        let mut left = filled;
        while left > 0 {
            let wrote = ready(to.socket, Interest::WRITABLE, || {
                Ok(splice(&pipe_out, None, to.socket, None, left, flags)?)
            })
            .await?;
            left -= wrote;
            moved_out(to, wrote);
        }
    }
}

/// The source's half-close, passed on (the destination may have gone already).
fn end(to: &End<'_>) -> io::Result<()> {
    let _ = rustix::net::shutdown(to.socket, rustix::net::Shutdown::Write);
    Ok(())
}

/// Counts `n` bytes read from `from`.
fn moved_in(from: &End<'_>, n: usize) {
    if let Some(read) = from.read {
        read.inc_by(n as u64);
    }
    if let Some(activity) = from.activity {
        activity.touch_read();
    }
}

/// Counts `n` bytes written to `to`.
fn moved_out(to: &End<'_>, n: usize) {
    if let Some(written) = to.written {
        written.inc_by(n as u64);
    }
    if let Some(activity) = to.activity {
        activity.touch();
    }
}

/// Runs `op` on `socket` once it is ready for `interest`, again after every would-block.
async fn ready(
    socket: &TcpStream,
    interest: Interest,
    mut op: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    loop {
        socket.ready(interest).await?;
        match socket.try_io(interest, &mut op) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            done => return done,
        }
    }
}

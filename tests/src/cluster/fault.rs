//! A fault proxy: a TCP relay on loopback in front of the API server, one per client, so a
//! test can cut one client off (a partition) or all of them (an outage) without touching
//! the API server. TLS passes through untouched; the client verifies the real server.
//!
//! Cut, the relay stops moving bytes: connections stay open and requests and watches hang
//! unanswered, as behind a network partition; new connections are accepted and held
//! without an answer. Healed, the held connections are closed (clients reconnect, as after a
//! NAT entry expired) and new ones pass again.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::HarnessError;

/// The relay.
pub struct FaultProxy {
    addr: SocketAddr,
    cut: watch::Sender<u64>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0`, relaying to `target`.
    pub async fn start(target: SocketAddr) -> Result<FaultProxy, HarnessError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| HarnessError::io("bind fault proxy on", "127.0.0.1:0", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| HarnessError::io("address of", "the fault proxy", e))?;
        // Odd: cut; the number counts every change, so a heal ends the connections of the
        // cut before it.
        let (cut, rx) = watch::channel(0u64);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let rx = rx.clone();
                tokio::spawn(relay(client, target, rx));
            }
        });
        Ok(FaultProxy { addr, cut, accept })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every connection, present and future, until [`FaultProxy::heal`].
    pub fn cut(&self) {
        self.cut.send_if_modified(|n| {
            let was_cut = *n % 2 == 1;
            if !was_cut {
                *n += 1;
            }
            !was_cut
        });
    }

    /// Ends the cut: held connections are closed, new ones pass.
    pub fn heal(&self) {
        self.cut.send_if_modified(|n| {
            let was_cut = *n % 2 == 1;
            if was_cut {
                *n += 1;
            }
            was_cut
        });
    }

    /// Whether it is cut now.
    pub fn is_cut(&self) -> bool {
        *self.cut.borrow() % 2 == 1
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(mut client: TcpStream, target: SocketAddr, mut cut: watch::Receiver<u64>) {
    let _ = client.set_nodelay(true);
    // Held while cut; a heal closes it.
    let era = *cut.borrow_and_update();
    if era % 2 == 1 {
        next_era(&mut cut, era).await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let mut up = [0u8; 16 * 1024];
    let mut down = [0u8; 16 * 1024];
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            // Cut: stop moving bytes; wait for the heal, then close.
            now = next_era(&mut cut, era) => {
                if now % 2 == 1 {
                    next_era(&mut cut, now).await;
                }
                return;
            }
            // A half-close is passed on; the other direction carries on.
            n = cr.read(&mut up), if !up_done => match n {
                Ok(0) | Err(_) => { let _ = sw.shutdown().await; up_done = true; }
                Ok(n) => if sw.write_all(&up[..n]).await.is_err() { return; },
            },
            n = sr.read(&mut down), if !down_done => match n {
                Ok(0) | Err(_) => { let _ = cw.shutdown().await; down_done = true; }
                Ok(n) => if cw.write_all(&down[..n]).await.is_err() { return; },
            },
        }
    }
}

/// Waits until the cut count moves on from `era`; the new count (the relay gone with the
/// sender counts as a change).
async fn next_era(cut: &mut watch::Receiver<u64>, era: u64) -> u64 {
    match cut.wait_for(|n| *n != era).await {
        Ok(n) => *n,
        Err(_) => era + 1,
    }
}

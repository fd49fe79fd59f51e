//! The floor: the least work an HTTP/1 keep-alive reverse proxy on tokio does per request,
//! measured by `bench/run` beside understudy, HAProxy and nginx on the same CPU budget.
//!
//! It is a yardstick, not a proxy anyone should deploy: one request at a time per connection,
//! requests without a body, responses framed by `Content-Length` only (what the benchmark's
//! backend sends), no header rewriting, no timeouts, and any other input simply closes the
//! connection. What it shows is how many CPU microseconds per request the kernel, tokio and an
//! HTTP/1 parser cost at the least on this machine, so the gap between it and understudy is the
//! cost of understudy's HTTP stack and features (docs/BENCHMARKS.md).
//!
//! Usage: `understudy-bench-floor LISTEN_ADDR UPSTREAM_ADDR`.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes per buffer; a head larger than this closes the connection.
const BUF: usize = 4096;

/// Idle upstream connections, reused last-in first-out.
type Pool = Rc<RefCell<Vec<TcpStream>>>;

/// The length of a complete request head without a body, if `buf` holds one.
fn request_head(buf: &[u8]) -> io::Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf).map_err(io::Error::other)? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(n) => {
            let has_body = req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("transfer-encoding")
                    || (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
            });
            if has_body {
                return Err(io::Error::other("request bodies are not supported"));
            }
            Ok(Some(n))
        }
    }
}

/// The length of a complete response (head and `Content-Length` body), once the head is in.
fn response_len(buf: &[u8]) -> io::Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf).map_err(io::Error::other)? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(n) => {
            let length = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .ok_or_else(|| io::Error::other("responses need a Content-Length"))?;
            Ok(Some(n + length))
        }
    }
}

/// Reads into `buf` until `complete` says how long the message is and that much is in.
async fn read_message(
    io: &mut TcpStream,
    buf: &mut [u8],
    complete: fn(&[u8]) -> io::Result<Option<usize>>,
) -> io::Result<Option<usize>> {
    let mut filled = 0;
    let mut want = None;
    loop {
        if let Some(n) = want.filter(|&n| filled >= n) {
            return Ok(Some(n));
        }
        if filled == buf.len() {
            return Err(io::Error::other("message larger than the buffer"));
        }
        let read = io.read(&mut buf[filled..]).await?;
        if read == 0 {
            return Ok(None);
        }
        filled += read;
        if want.is_none() {
            want = complete(&buf[..filled])?;
        }
    }
}

async fn serve(mut client: TcpStream, pool: Pool, upstream: &'static str) -> io::Result<()> {
    let mut request = vec![0u8; BUF];
    let mut response = vec![0u8; BUF];
    while let Some(n) = read_message(&mut client, &mut request, request_head).await? {
        let pooled = pool.borrow_mut().pop();
        let mut app = match pooled {
            Some(app) => app,
            None => {
                let app = TcpStream::connect(upstream).await?;
                app.set_nodelay(true)?;
                app
            }
        };
        app.write_all(&request[..n]).await?;
        let Some(m) = read_message(&mut app, &mut response, response_len).await? else {
            return Ok(());
        };
        client.write_all(&response[..m]).await?;
        pool.borrow_mut().push(app);
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: understudy-bench-floor LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let upstream: &'static str = upstream.leak();
    let listener = TcpListener::bind(&listen).await?;
    let pool = Pool::default();
    tokio::task::LocalSet::new()
        .run_until(async move {
            loop {
                let (client, _) = listener.accept().await?;
                client.set_nodelay(true)?;
                tokio::task::spawn_local(serve(client, pool.clone(), upstream));
            }
        })
        .await
}

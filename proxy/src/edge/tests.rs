use http_body_util::{BodyExt, Full};
use understudy_elector::failsafe::PEER_PATH;

use super::*;
use crate::testing::*;

/// A POST as the HTTP/1.1 engine hands it on (with its `Host`).
fn post(path: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header(http::header::HOST, "a")
        .body(Full::new(Bytes::from("{}")))
        .unwrap()
}

async fn status_and_body(response: Response<ProxyBody>) -> (StatusCode, String) {
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn the_failsafe_endpoint_is_answered_at_the_edge_only_when_the_failsafe_is_on() {
    let (app_addr, app) = app("a").await;
    let client: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let p = start_proxy(proxy_settings(app_addr), leading("a", "127.0.0.1:1", 1)).await;

    // On: the election answers (a message it cannot read is refused with 400), on both ports.
    let on = Edge::new(p.proxy.clone(), Some(Answerer::default()));
    let (status, body) = status_and_body(on.data(post(PEER_PATH), client).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = status_and_body(on.peer(post(PEER_PATH), client).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(app.hits(), 0, "never proxied");
    // Other paths are traffic.
    let (status, body) = status_and_body(on.data(post("/x"), client).await).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "a:{}"));

    // Off: the path is an ordinary one.
    let off = Edge::new(p.proxy.clone(), None);
    let (status, body) = status_and_body(off.data(post(PEER_PATH), client).await).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "a:{}"));
    assert_eq!(app.hits(), 2);
}

#[tokio::test]
async fn with_mtls_on_the_failsafe_endpoint_is_taken_on_the_peer_port_only() {
    use crate::metrics::Metrics;
    use crate::peer_tls::PeerTls;
    use crate::peer_tls::testing::{Ca, NAME, SecretDir};

    let (app_addr, app) = app("a").await;
    let dir = SecretDir::issued(&Ca::new("edge"));
    let metrics = Metrics::default();
    let tls = PeerTls::load(dir.path(), NAME, metrics.peer_tls()).unwrap();
    let (_views, rx) = tokio::sync::watch::channel(leading("a", "127.0.0.1:1", 1));
    let proxy = Proxy::with_peer_tls(proxy_settings(app_addr), rx, metrics, Some(tls));
    let edge = Edge::new(proxy, Some(Answerer::default()));
    let client: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let (status, body) = status_and_body(edge.data(post(PEER_PATH), client).await).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "no client speaks for a member: {body}"
    );
    let (status, _) = status_and_body(edge.peer(post(PEER_PATH), client).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the election read it");
    assert_eq!(app.hits(), 0);
}

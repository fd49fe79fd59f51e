use std::time::Duration;

use understudy_elector::failsafe::{Refusal, RequestKind};

use super::*;

fn request(kind: RequestKind) -> PeerRequest {
    PeerRequest {
        lease: "web".into(),
        epoch: 1,
        from: "pod-a".into(),
        to: "pod-b".into(),
        kind,
    }
}

fn post(body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(PEER_PATH)
        .body(Full::new(body.into()))
        .unwrap()
}

async fn body(response: Response<ProxyBody>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn the_endpoint_refuses_what_it_cannot_read_and_names_why() {
    let answerer = Answerer::default();
    let get = Request::get(PEER_PATH)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = respond(&answerer, get).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "POST");

    let response = respond(&answerer, post("{\"kind\":\"vote\"}")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(body(response).await.contains("unknown kind \"vote\""));

    let response = respond(&answerer, post(vec![b' '; MAX_MESSAGE + 1])).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // A Lease this pod does not contend for.
    let response = respond(&answerer, post(request(RequestKind::Status).to_json())).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        body(response)
            .await
            .contains("no election here for lease \"web\"")
    );
}

#[tokio::test]
async fn a_member_is_asked_over_http_and_its_answer_comes_back() {
    // A member's endpoint on loopback, answering every round with a refusal.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service =
            hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                assert_eq!(req.uri().path(), PEER_PATH);
                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                let asked = PeerRequest::from_json(&bytes).unwrap();
                let RequestKind::Confirm { round, .. } = asked.kind else {
                    panic!("a round");
                };
                let reply = PeerReply::Refuse {
                    round,
                    reason: Refusal::ApiReachable,
                    holder: None,
                };
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                    reply.to_json(),
                ))))
            });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    let member = Member {
        identity: "pod-b".into(),
        address: Some(address),
        peer_address: None,
        ready: None,
        priority: 0,
    };
    let channel = HttpPeerChannel::new(Dialer::new(Duration::from_secs(1), None));
    let kind = RequestKind::Confirm {
        round: 3,
        lease_ms: 10_000,
    };
    let reply = tokio::time::timeout(Duration::from_secs(5), channel.send(&member, request(kind)))
        .await
        .unwrap();
    assert_eq!(
        reply,
        Some(PeerReply::Refuse {
            round: 3,
            reason: Refusal::ApiReachable,
            holder: None
        })
    );
    // No address (a member without mTLS, asked over mTLS, has none): unreachable at once.
    let nowhere = Member {
        address: None,
        ..member
    };
    assert_eq!(
        channel.send(&nowhere, request(RequestKind::Status)).await,
        None
    );
}

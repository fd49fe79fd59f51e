use super::*;

#[test]
fn page_names_its_pod() {
    assert_eq!(
        pod_of_page(&page_html("nginx-5d4f8-x2w9k")),
        Some("nginx-5d4f8-x2w9k")
    );
    assert_eq!(pod_of_page("<html>502 Bad Gateway</html>"), None);
}

#[test]
fn log_lines_parse() {
    let e = AccessEntry::parse("1795489220.893\t0.002\t200\tnginx-a\t3\tnginx-1\tGET /").unwrap();
    assert_eq!(e.status, 200);
    assert_eq!(e.leader.as_deref(), Some("nginx-a"));
    assert_eq!(e.epoch, Some(3));
    assert_eq!(e.lease.as_deref(), Some("nginx-1"));
    assert_eq!(e.request, "GET /");
    assert!((e.received() - 1795489220.891).abs() < 1e-6);
    let bare = AccessEntry::parse("1795489220.905\t0.000\t200\t-\t-\t-\tGET /").unwrap();
    assert_eq!((bare.leader, bare.epoch, bare.lease), (None, None, None));
    assert!(AccessEntry::parse("garbage").is_none());
}

use super::*;

#[test]
fn names_look_like_kubernetes_pod_names() {
    let h1 = template_hash("nginx", 1);
    assert_eq!(h1.len(), 10);
    assert_eq!(h1, template_hash("nginx", 1));
    assert_ne!(h1, template_hash("nginx", 2));
    let mut rng = 7;
    let (a, b) = (suffix(&mut rng), suffix(&mut rng));
    assert_eq!(a.len(), 5);
    assert_ne!(a, b);
}

use super::*;

fn vip() -> Vip {
    Vip {
        prefix: "us-3-".into(),
        ip: Ipv4Addr::new(198, 19, 3, 1),
        target_port: 8080,
        subnet: Ipv4Addr::new(198, 18, 3, 0),
    }
}

#[test]
fn three_endpoints_are_chosen_uniformly() {
    let eps = [2, 3, 4].map(|h| Ipv4Addr::new(198, 18, 3, h));
    let rules = vip().render(&eps);
    assert!(rules.contains(
        "-A us-3-SVC -p tcp -m statistic --mode random --probability 0.3333333333 -j DNAT --to-destination 198.18.3.2:8080\n"
    ));
    assert!(
        rules.contains("--probability 0.5000000000 -j DNAT --to-destination 198.18.3.3:8080\n")
    );
    assert!(rules.contains("-A us-3-SVC -p tcp -j DNAT --to-destination 198.18.3.4:8080\n"));
    assert!(!rules.contains("REJECT"));
}

#[test]
fn no_endpoints_rejects() {
    let rules = vip().render(&[]);
    assert!(!rules.contains("-j DNAT"));
    assert!(rules.contains("-A us-3-SERVICES -d 198.19.3.1/32 -p tcp -m tcp --dport 80 -j REJECT"));
}

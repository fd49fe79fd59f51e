use super::*;

#[test]
fn slot_numbers_come_from_the_prefix_only() {
    assert_eq!(slot_of("us-7-br"), Some(7));
    assert_eq!(slot_of("us-12-nginx-5d4f-x2w9k"), Some(12));
    assert_eq!(slot_of("us-12-SERVICES"), Some(12));
    assert_eq!(slot_of("us-east-1"), None);
    assert_eq!(slot_of("us-7-"), None);
    assert_eq!(slot_of("eth0"), None);
    assert_eq!(slot_of("us-0-br"), None);
}

#[test]
fn script_touches_only_its_prefix() {
    let s = script(9);
    assert!(s.starts_with("p='us-9-'\n"));
    assert!(!s.contains("us-1-"));
}

use super::*;

#[test]
fn orders_decimal_resource_versions() {
    assert_eq!(rv_newer("10", "9"), Some(true));
    assert_eq!(rv_newer("9", "10"), Some(false));
    assert_eq!(rv_newer("9", "9"), Some(false));
    assert_eq!(rv_newer("abc", "9"), None);
}

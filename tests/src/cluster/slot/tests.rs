use super::*;

#[test]
fn own_start_time_is_read() {
    let me = std::process::id();
    let start = start_time(me).expect("own /proc/PID/stat");
    assert!(alive(me, start));
    assert!(!alive(me, start + 1));
}

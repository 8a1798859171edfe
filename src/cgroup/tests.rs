use super::*;

#[test]
fn escapes_are_undone() {
    let systemd = |s| unescape(s, "\\x", 2, 16);
    assert_eq!(systemd("my\\x2dbox"), "my-box");
    assert_eq!(systemd("a\\x5cb\\x2"), "a\\b\\x2");
    assert_eq!(systemd("\\xzz \\x+1 é"), "\\xzz \\x+1 é");
    let mountinfo = |s| unescape(s, "\\", 3, 8);
    assert_eq!(mountinfo("/a\\040b\\011c\\134d"), "/a b\tc\\d");
    assert_eq!(mountinfo("/a\\9 \\400"), "/a\\9 \\400");
    assert_eq!(mountinfo("\\"), "\\");
}

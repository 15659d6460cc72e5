//! `loopscope ping 127.0.0.1`, typed as to iputils ping, gets one line that says what to type
//! instead, and exit 2 (issue 11 item 13); the suggested endpoint then works.

use assert_cmd::Command;

fn ping(endpoint: &str) -> (Option<i32>, String) {
    let output = Command::cargo_bin("loopscope")
        .unwrap()
        .args(["ping", endpoint, "-c", "1"])
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_bare_address_gets_the_icmp_endpoint_suggested() {
    for (typed, suggested) in [
        ("127.0.0.1", "icmp://127.0.0.1"),
        ("::1", "icmp://[::1]"),
        ("localhost", "icmp://localhost"),
    ] {
        let (code, stderr) = ping(typed);
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(
            stderr,
            format!(
                "loopscope: error: '{typed}' names a host, not a link: did you mean {suggested}?\n"
            )
        );
        assert!(!stderr.contains("malformed"));
    }
}

#[test]
fn the_suggestion_is_an_endpoint_ping_accepts() {
    let (code, stderr) = ping("icmp://127.0.0.1");
    // Without privilege or a ping_group_range that admits us, ICMP cannot run: that is an
    // environment error (2), but never a malformed endpoint.
    assert!(matches!(code, Some(0 | 2)), "{stderr}");
    assert!(
        !stderr.contains("names a host") && !stderr.contains("malformed"),
        "{stderr}"
    );
}

//! iperf3's control messages as a server or client reads them off the wire: a state byte,
//! then a length-prefixed JSON object (parameters, results or loopscope's grant). What the
//! parameter and grant readers accept must survive their own writers unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;
use loopscope_measure::perf::{Grant, MAX_PARAMS_JSON, State, TestParams, TestResults};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let [state, high, mid, low, lower, rest @ ..] = data else {
        return;
    };
    if let Some(parsed) = State::from_byte(*state) {
        assert_eq!(parsed.byte(), *state);
    }
    // The length prefix is the sender's claim; only the bytes present are read.
    let claimed = u32::from_be_bytes([*high, *mid, *low, *lower]) as usize;
    if claimed > MAX_PARAMS_JSON {
        return;
    }
    let text = &rest[..claimed.min(rest.len())];
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(text) else {
        return;
    };
    if let Ok(params) = TestParams::from_json(&object) {
        let _ = params.duration();
        let Value::Object(again) = params.to_json() else {
            panic!("parameters written as something other than an object");
        };
        let reread = TestParams::from_json(&again).expect("our own parameters are refused");
        // A client that named no version is written as iperf3 3.12 (a stock server wants one).
        let mut expected = params.clone();
        expected
            .client_version
            .get_or_insert_with(|| "3.12".to_string());
        assert_eq!(reread, expected);
    }
    if let Ok(grant) = Grant::from_json(&object) {
        let Value::Object(again) = grant.to_json() else {
            panic!("grant written as something other than an object");
        };
        assert_eq!(
            Grant::from_json(&again).expect("our own grant is refused"),
            grant
        );
    }
    if let Ok(results) = TestResults::from_json(&object) {
        let _ = results.to_json();
    }
});

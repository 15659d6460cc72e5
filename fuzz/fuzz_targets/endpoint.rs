//! Endpoint strings (`tcp://[::1]:7?bind=…`, `sim:?ber=…`) and `--impair` option strings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;
use loopscope_link::Endpoint;
use loopscope_link::adapter::impair::ImpairmentConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Endpoint::parse(text);
    let _ = ImpairmentConfig::parse(text);
});

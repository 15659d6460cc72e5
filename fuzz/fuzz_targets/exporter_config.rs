//! The exporter's configuration file (`loopscope exporter --config`, re-read on SIGHUP): TOML
//! from whoever may write that file. Whatever it holds, the parser answers with a checked
//! configuration or with one line that names where and why, and a configuration it accepts is
//! one the exporter can run: every target names a known module, names are unique, intervals
//! and bursts are non-zero.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use loopscope_exporter::Config;
use loopscope_fuzz as _;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text) {
        Err(error) => {
            assert!(
                !error.message.contains('\n'),
                "a refusal must be one line: {:?}",
                error.message
            );
            assert!(!error.message.is_empty(), "a refusal must say why");
            if let Some(rest) = error.message.strip_prefix("line ") {
                let number: usize = rest
                    .split(':')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("a line number after \"line \"");
                assert!(
                    (1..=text.lines().count().max(1) + 1).contains(&number),
                    "line {number} of a {}-line file",
                    text.lines().count()
                );
            }
        }
        Ok(config) => {
            assert!(config.workers > 0, "no worker to run the probes");
            let mut names = HashSet::new();
            for target in &config.targets {
                assert!(names.insert(&target.name), "two targets named {}", target.name);
                assert!(
                    config.modules.contains_key(&target.module),
                    "target {} names unknown module {}",
                    target.name,
                    target.module
                );
                assert!(!target.interval.is_zero(), "target {} every 0 s", target.name);
            }
            for (name, module) in &config.modules {
                assert!(module.packets > 0, "module {name} sends no packet");
                assert!(!module.timeout.is_zero(), "module {name} waits 0 s");
            }
        }
    }
});

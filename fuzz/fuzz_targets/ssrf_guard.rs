//! The SSRF guard with structured input: a policy (allow-private, allow and deny prefixes) plus
//! a string, with names answered by a fixed resolver. Whatever the input, a vetted address is
//! never loopback unless the policy allowed a prefix that contains it.
#![no_main]

use std::net::IpAddr;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;
use loopscope_addr::guard::{Guard, StaticResolver};
use loopscope_addr::verdict::Policy;

#[derive(Debug, Arbitrary)]
struct Input {
    allow_private: bool,
    allow: Vec<(IpAddr, u8)>,
    deny: Vec<(IpAddr, u8)>,
    target: String,
    port: Option<u16>,
}

fuzz_target!(|input: Input| {
    let prefixes = |list: &[(IpAddr, u8)]| {
        list.iter()
            .take(8)
            .filter_map(|(address, length)| format!("{address}/{}", length % 129).parse().ok())
            .collect::<Vec<_>>()
    };
    let policy = Policy {
        allow_private: input.allow_private,
        allow: prefixes(&input.allow),
        deny: prefixes(&input.deny),
    };
    let mut resolver = StaticResolver::new();
    resolver.insert(
        "evil.example",
        ["127.0.0.1".parse().unwrap(), "8.8.8.8".parse().unwrap()],
    );
    resolver.insert("public.example", ["93.184.215.14".parse().unwrap()]);
    let allow = policy.allow.clone();
    let guard = Guard::new(policy, resolver);
    if let Ok(vetted) = guard.vet(&input.target, input.port) {
        for address in &vetted.addrs {
            if loopscope_addr::is_loopback(address.ip()) {
                assert!(
                    allow.iter().any(|prefix| prefix.contains(address.ip())),
                    "{:?} let loopback {address} through",
                    input.target
                );
            }
        }
    }
});

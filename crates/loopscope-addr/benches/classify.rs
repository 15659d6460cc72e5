//! Bulk classification of literal addresses, beside the floor: `std` parsing plus
//! `is_loopback` over the same inputs in the same run.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use loopscope_addr::{Decision, Policy, classify_literal};

/// A deterministic mix: 70 % IPv4, 30 % IPv6, with special-purpose addresses sprinkled in.
fn inputs(count: usize) -> Vec<String> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let specials = [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "::ffff:127.0.0.1",
        "64:ff9b::808:808",
        "2001:db8::1",
        "fe80::1",
        "0.0.0.0",
    ];
    (0..count)
        .map(|index| {
            let r = next();
            match index % 10 {
                0 => specials[(r % specials.len() as u64) as usize].to_string(),
                1..=6 => Ipv4Addr::from_bits(r as u32).to_string(),
                _ => Ipv6Addr::from_bits(u128::from(r) << 64 | u128::from(next())).to_string(),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let addresses = inputs(10_000);
    let policy = Policy::default();
    let mut group = c.benchmark_group("literal_addresses");
    group.throughput(Throughput::Elements(addresses.len() as u64));

    group.bench_function("floor_std_parse_is_loopback", |b| {
        b.iter(|| {
            let mut loopback = 0usize;
            for text in &addresses {
                if let Ok(ip) = black_box(text.as_str()).parse::<IpAddr>()
                    && ip.is_loopback()
                {
                    loopback += 1;
                }
            }
            black_box(loopback)
        })
    });

    group.bench_function("classify_full_verdict", |b| {
        b.iter(|| {
            let mut loopback = 0usize;
            let mut denied = 0usize;
            for text in &addresses {
                if let Some(verdict) = classify_literal(black_box(text.as_str())) {
                    loopback += usize::from(verdict.loopback);
                    denied += usize::from(policy.check(&verdict).0 == Decision::Deny);
                }
            }
            black_box((loopback, denied))
        })
    });

    let parsed: Vec<IpAddr> = addresses.iter().filter_map(|t| t.parse().ok()).collect();
    group.bench_function("classify_parsed_only", |b| {
        b.iter(|| {
            let mut denied = 0usize;
            for ip in &parsed {
                let verdict = loopscope_addr::classify(black_box(*ip));
                denied += usize::from(policy.check(&verdict).0 == Decision::Deny);
            }
            black_box(denied)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);

//! Bulk classification of literal addresses, beside the floor: `std` parsing plus
//! `is_loopback` over the same inputs in the same run.
//!
//! Each benchmark runs twice: in wall-clock time (criterion's default) and in this thread's CPU
//! time (`CLOCK_THREAD_CPUTIME_ID`). The goal is per core, and on a shared, oversubscribed
//! machine only CPU time says what one core does; the floor, measured the same way in the same
//! run, keeps the comparison honest.

// criterion_group! generates public functions without docs.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
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

/// This thread's CPU time in nanoseconds.
struct ThreadCpuTime;

fn thread_cpu_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

static WALL: WallTime = WallTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, like wall time: reuse its formatting.
        WALL.formatter()
    }
}

fn bench_wall(c: &mut Criterion) {
    bench(c, "literal_addresses_wall");
}

fn bench_cpu(c: &mut Criterion<ThreadCpuTime>) {
    bench(c, "literal_addresses_cpu");
}

fn bench<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let mixed = inputs(10_000);
    let ipv4: Vec<String> = mixed.iter().filter(|t| !t.contains(':')).cloned().collect();
    let ipv6: Vec<String> = mixed.iter().filter(|t| t.contains(':')).cloned().collect();
    let policy = Policy::default();
    for (label, addresses) in [("mixed", &mixed), ("ipv4", &ipv4), ("ipv6", &ipv6)] {
        let mut group = c.benchmark_group(format!("{name}/{label}"));
        group.throughput(Throughput::Elements(addresses.len() as u64));
        group.bench_function("floor_std_parse_is_loopback", |b| {
            b.iter(|| {
                let mut loopback = 0usize;
                for text in addresses {
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
                for text in addresses {
                    if let Some(verdict) = classify_literal(black_box(text.as_str())) {
                        loopback += usize::from(verdict.loopback);
                        denied += usize::from(policy.check(&verdict).0 == Decision::Deny);
                    }
                }
                black_box((loopback, denied))
            })
        });
        if label == "mixed" {
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
        }
        group.finish();
    }
}

criterion_group! {
    name = wall;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench_wall
}
criterion_group! {
    name = cpu;
    config = Criterion::default()
        .with_measurement(ThreadCpuTime)
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench_cpu
}
criterion_main!(wall, cpu);

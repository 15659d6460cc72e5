//! Allocation stress: many allocations across threads and processes at once from a tiny pool,
//! so allocators constantly contend. The independent judge of a collision is the kernel: every
//! holder binds a UDP socket (without SO_REUSEADDR) on its address and a fixed port, which fails
//! with EADDRINUSE if anyone else bound the same address at the same time.

use std::io;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use loopscope_testaddr::{Pool, TestAddr, exclusive_addresses_available};

const WORKER_ENV: &str = "LOOPSCOPE_TESTADDR_STRESS_WORKER";
const PROBE_PORT: u16 = 47_999;
const THREADS: usize = 8;
const PER_THREAD: usize = 32;
const CHILD_PROCESSES: usize = 3;

/// 16 addresses for 32 concurrent holders: half of them wait at any moment.
fn contended_pool() -> Pool {
    Pool::new(
        Ipv4Addr::new(127, 251, 0, 1),
        Ipv4Addr::new(127, 251, 0, 16),
    )
    .expect("valid pool")
}

#[derive(Debug, Default, PartialEq)]
struct Tally {
    allocations: usize,
    collisions: usize,
}

/// Bind the probe socket on `ip` and hold it briefly, as a test would use its address.
/// `Ok(false)` means someone else held the same address at the same time.
fn hold(ip: IpAddr) -> io::Result<bool> {
    match UdpSocket::bind((ip, PROBE_PORT)) {
        Ok(socket) => {
            thread::sleep(Duration::from_micros(300));
            drop(socket);
            Ok(true)
        }
        Err(error) if error.kind() == io::ErrorKind::AddrInUse => Ok(false),
        Err(error) => Err(error),
    }
}

fn run_threads(threads: usize, per_thread: usize) -> Tally {
    let allocations = AtomicUsize::new(0);
    let collisions = AtomicUsize::new(0);
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let pool = contended_pool();
                for _ in 0..per_thread {
                    let addr = pool
                        .allocate_wait(Duration::from_secs(60))
                        .expect("allocation within 60 s");
                    assert!(addr.is_exclusive());
                    if !hold(addr.ip()).expect("probe bind") {
                        collisions.fetch_add(1, Ordering::Relaxed);
                    }
                    allocations.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    Tally {
        allocations: allocations.into_inner(),
        collisions: collisions.into_inner(),
    }
}

/// In a child process (spawned by the stress test below) this is the worker; run alone it is a
/// one-process version of the same check.
#[test]
fn stress_worker() {
    if !exclusive_addresses_available() {
        eprintln!("skip: this host has 127.0.0.1 only");
        return;
    }
    let worker = std::env::var_os(WORKER_ENV).is_some();
    let tally = if worker {
        run_threads(THREADS, PER_THREAD)
    } else {
        run_threads(4, 16)
    };
    if worker {
        // Parsed by the parent; --nocapture makes it reach the pipe.
        println!(
            "TALLY allocations={} collisions={}",
            tally.allocations, tally.collisions
        );
    }
    assert_eq!(tally.collisions, 0, "{tally:?}");
}

fn parse_tally(stdout: &str) -> Option<Tally> {
    // libtest may print "test stress_worker ... " before the worker's own line.
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("TALLY ").map(|(_, rest)| rest))?;
    let mut tally = Tally::default();
    for field in line.split_whitespace() {
        let (key, value) = field.split_once('=')?;
        let value: usize = value.parse().ok()?;
        match key {
            "allocations" => tally.allocations = value,
            "collisions" => tally.collisions = value,
            _ => return None,
        }
    }
    Some(tally)
}

#[test]
fn a_thousand_allocations_across_threads_and_processes_never_collide() {
    if !exclusive_addresses_available() {
        eprintln!("skip: this host has 127.0.0.1 only");
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let children: Vec<_> = (0..CHILD_PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "stress_worker",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(WORKER_ENV, "1")
                .env_remove(loopscope_testaddr::MODE_ENV)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn worker process")
        })
        .collect();
    // This process is one more worker, running while the children do.
    let mut total = run_threads(THREADS, PER_THREAD);
    for child in children {
        let output = child.wait_with_output().expect("worker output");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "worker failed: {stdout}");
        let tally = parse_tally(&stdout).unwrap_or_else(|| panic!("no tally in: {stdout}"));
        assert_eq!(tally.allocations, THREADS * PER_THREAD);
        total.allocations += tally.allocations;
        total.collisions += tally.collisions;
    }
    assert_eq!(
        total.allocations,
        (CHILD_PROCESSES + 1) * THREADS * PER_THREAD
    );
    assert!(total.allocations >= 1000);
    assert_eq!(total.collisions, 0, "{total:?}");
}

/// The negative control: the same contention without claims does collide, so the probe above
/// would have caught a broken allocator. Uses its own range so it cannot disturb the test above.
#[test]
fn without_claims_the_same_contention_collides() {
    if !exclusive_addresses_available() {
        eprintln!("skip: this host has 127.0.0.1 only");
        return;
    }
    let collisions = AtomicUsize::new(0);
    thread::scope(|scope| {
        for t in 0..THREADS {
            let collisions = &collisions;
            scope.spawn(move || {
                for i in 0..400 {
                    if collisions.load(Ordering::Relaxed) > 0 {
                        return;
                    }
                    // Unclaimed picks from four addresses.
                    let ip = IpAddr::V4(Ipv4Addr::new(127, 252, 0, 1 + ((t + i) % 4) as u8));
                    if !hold(ip).expect("probe bind") {
                        collisions.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert!(collisions.into_inner() > 0);
}

#[test]
fn the_shared_fallback_gives_unique_ports_on_127_0_0_1() {
    let shared = TestAddr::localhost_v4().expect("127.0.0.1 is bindable");
    assert!(!shared.is_exclusive());
    assert_eq!(shared.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    let a = shared.tcp_listener().expect("listener");
    let b = shared.tcp_listener().expect("listener");
    let u = shared.udp_socket().expect("udp");
    assert_ne!(
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port()
    );
    assert_eq!(u.local_addr().unwrap().ip(), shared.ip());
}

#[test]
fn the_environment_variable_forces_the_fallback_in_a_child_process() {
    if std::env::var_os("LOOPSCOPE_TESTADDR_FALLBACK_CHILD").is_some() {
        // The child: the variable below is set, so new() must give the shared address.
        let addr = TestAddr::new().expect("fallback allocation");
        assert!(!addr.is_exclusive());
        assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        println!("FALLBACK ok");
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let output = Command::new(exe)
        .args([
            "the_environment_variable_forces_the_fallback_in_a_child_process",
            "--exact",
            "--nocapture",
        ])
        .env("LOOPSCOPE_TESTADDR_FALLBACK_CHILD", "1")
        .env(loopscope_testaddr::MODE_ENV, "shared")
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("FALLBACK ok"), "{stdout}");
}

#[test]
fn sockets_of_an_exclusive_address_are_bound_to_it() {
    let addr = TestAddr::new().expect("allocation");
    let listener = addr.tcp_listener().expect("listener");
    assert_eq!(listener.local_addr().unwrap().ip(), addr.ip());
    let client = addr
        .tcp_connect(listener.local_addr().unwrap())
        .expect("connect");
    let (_, peer) = listener.accept().expect("accept");
    // The server sees the test's own address as the client's source.
    assert_eq!(peer.ip(), addr.ip());
    assert_eq!(client.local_addr().unwrap().ip(), addr.ip());
    let raw = addr
        .bind_socket(socket2::Type::DGRAM, 0, |s| s.set_reuse_port(true))
        .expect("custom socket");
    assert_eq!(
        raw.local_addr().unwrap().as_socket().unwrap().ip(),
        addr.ip()
    );
    if addr.is_exclusive() {
        let port = listener.local_addr().unwrap().port();
        let udp = addr.udp_socket_on(port).expect("same port, other protocol");
        assert_eq!(udp.local_addr().unwrap().port(), port);
        let second = TestAddr::new().expect("second allocation");
        assert_ne!(second.ip(), addr.ip());
    }
}

#[test]
fn ipv6_loopback_is_shared_with_unique_ports() {
    match TestAddr::localhost_v6() {
        Ok(addr) => {
            assert!(!addr.is_exclusive());
            let l = addr.tcp_listener().expect("listener on ::1");
            assert_eq!(
                l.local_addr().unwrap().ip(),
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            );
        }
        Err(error) => eprintln!("skip: IPv6 loopback unavailable: {error}"),
    }
}

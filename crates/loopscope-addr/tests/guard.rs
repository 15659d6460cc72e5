//! The guard's name path against a stand-in resolver and a hosts file (never the internet), and
//! a real connection to a listener on 127.0.0.1 through the vetted addresses.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::Duration;

use loopscope_addr::Policy;
use loopscope_addr::guard::{Guard, GuardError, Resolver, StaticResolver};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn resolver() -> StaticResolver {
    StaticResolver::parse_hosts(
        "# test zone\n\
         93.184.215.14   public.test www.public.test\n\
         2606:2800:21f::1 public.test\n\
         8.8.8.8         rebind.test\n\
         127.0.0.1       rebind.test\n\
         ::ffff:127.0.0.1 mapped.test\n\
         10.0.0.5        intranet.test\n\
         169.254.169.254 metadata.test\n\
         not-an-address  ignored.test\n",
    )
}

#[test]
fn hosts_file_parsing() {
    let r = resolver();
    assert_eq!(
        r.resolve("PUBLIC.test.").unwrap(),
        [ip("93.184.215.14"), ip("2606:2800:21f::1")]
    );
    assert_eq!(r.resolve("www.public.test").unwrap(), [ip("93.184.215.14")]);
    assert!(r.resolve("ignored.test").is_err());
    assert!(r.resolve("missing.test").is_err());
}

#[test]
fn every_answer_is_checked_and_vetted_addresses_returned() {
    let guard = Guard::new(Policy::default(), resolver());
    let vetted = guard.vet("https://public.test/path", None).unwrap();
    assert_eq!(
        vetted.addrs,
        [
            SocketAddr::new(ip("93.184.215.14"), 443),
            SocketAddr::new(ip("2606:2800:21f::1"), 443)
        ]
    );
    assert_eq!(vetted.host_header(), "public.test:443");
    // One bad answer among good ones denies the name.
    match guard.vet("http://rebind.test/", None) {
        Err(GuardError::Denied { address, .. }) => assert_eq!(address, ip("127.0.0.1")),
        other => panic!("{other:?}"),
    }
    for input in [
        "mapped.test:80",
        "http://intranet.test/",
        "http://metadata.test/latest",
    ] {
        assert!(
            matches!(guard.vet(input, None), Err(GuardError::Denied { .. })),
            "{input}"
        );
    }
    // localhost never reaches the resolver, and is denied.
    assert!(matches!(
        guard.vet("http://localhost:8080/", None),
        Err(GuardError::Denied { .. })
    ));
    assert!(matches!(
        guard.vet("missing.test", Some(80)),
        Err(GuardError::Resolve(_))
    ));
    assert!(matches!(
        guard.vet("public.test", None),
        Err(GuardError::NoPort(_))
    ));
    assert!(matches!(
        guard.vet("http://public.test\\@127.0.0.1/", None),
        Err(GuardError::Ambiguous { .. })
    ));
    let private = Guard::new(
        Policy {
            allow_private: true,
            ..Policy::default()
        },
        resolver(),
    );
    assert!(private.vet("http://intranet.test/", None).is_ok());
    assert!(private.vet("http://metadata.test/", None).is_err());
}

#[test]
fn connects_to_exactly_the_vetted_address() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buffer = [0u8; 256];
        let n = stream.read(&mut buffer).unwrap();
        stream.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello").unwrap();
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    });
    let url = format!("http://127.0.0.1:{port}/x");
    let denied = Guard::new(Policy::default(), resolver());
    assert!(matches!(
        denied.vet(&url, None),
        Err(GuardError::Denied { .. })
    ));
    let allowed = Guard::new(
        Policy {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            ..Policy::default()
        },
        resolver(),
    );
    let vetted = allowed.vet(&url, None).unwrap();
    assert_eq!(vetted.addrs, [SocketAddr::new(ip("127.0.0.1"), port)]);
    let mut stream = vetted.connect(Duration::from_secs(2)).unwrap();
    assert_eq!(stream.peer_addr().unwrap(), vetted.addrs[0]);
    stream.write_all(b"GET /x HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.ends_with("hello"));
    assert!(server.join().unwrap().starts_with("GET /x"));
}

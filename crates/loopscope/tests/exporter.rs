//! `loopscope exporter` against the real thing: a Prometheus server (Debian's `prometheus`)
//! started on loopback with a generated configuration scrapes it, and its HTTP API is asked for
//! the series; `promtool` checks the exposition and the shipped rules. Nothing sleeps for a
//! fixed time: every wait polls for the event (a line printed, a series present) with a
//! generous overall limit, so a busy machine only makes the tests slower.

mod support;

mod martians_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{assert_exit, free_port, installed};

const BIN: &str = env!("CARGO_BIN_EXE_loopscope");
/// The longest any wait may take: far beyond what the events need on a quiet machine.
const PATIENCE: Duration = Duration::from_secs(120);

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Polls `check` until it returns Some, with a short pause between tries (the pause is the
/// polling period, not a guess at how long the event takes).
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < PATIENCE, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.0 GET: status code and body.
fn http_get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_get_with(address, path, "")
}

/// A GET with extra header lines (each ending in CRLF).
fn http_get_with(address: SocketAddr, path: &str, headers: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\n{headers}\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// A child process killed when the test ends, with its stderr lines on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn spawn(mut command: Command, stdout_lines: bool) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(if stdout_lines {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(if stdout_lines {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .spawn()
            .expect("start the program");
        let (sender, lines) = mpsc::channel();
        let reader: Box<dyn Read + Send> = if stdout_lines {
            Box::new(child.stdout.take().expect("stdout"))
        } else {
            Box::new(child.stderr.take().expect("stderr"))
        };
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// The next line that contains `needle`; the lines before it are returned too.
    fn line_with(&self, needle: &str) -> (String, Vec<String>) {
        let mut before = Vec::new();
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) if line.contains(needle) => return (line, before),
                Ok(line) => before.push(line),
                Err(error) => panic!("no line with '{needle}' ({error}); saw {before:?}"),
            }
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `loopscope reflect udp://127.0.0.1:0`, and the endpoint it reflects on.
fn reflector() -> (Running, String) {
    let mut command = Command::new(BIN);
    command.args(["reflect", "udp://127.0.0.1:0"]);
    let running = Running::spawn(command, true);
    let (line, _) = running.line_with("reflecting on");
    let endpoint = line
        .trim()
        .strip_prefix("reflecting on ")
        .expect("endpoint")
        .to_string();
    (running, endpoint)
}

struct Exporter {
    running: Running,
    address: SocketAddr,
    config: PathBuf,
    _directory: tempfile::TempDir,
}

impl Exporter {
    fn start(config: &str) -> Exporter {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("loopscope.toml");
        std::fs::write(&path, config).expect("write config");
        let mut command = Command::new(BIN);
        command.args(["exporter", "--listen", "127.0.0.1:0", "--config"]);
        command.arg(&path);
        let running = Running::spawn(command, false);
        let (line, _) = running.line_with("listening on http://");
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|text| text.parse().ok())
            .expect("the listening address");
        Exporter {
            running,
            address,
            config: path,
            _directory: directory,
        }
    }

    fn metrics(&self) -> String {
        let (status, body) = http_get(self.address, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200);
        body
    }
}

/// The value of the sample whose name and labels start with `prefix` (`name{labels}`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

struct Prometheus {
    _running: Running,
    address: SocketAddr,
    _directory: tempfile::TempDir,
}

impl Prometheus {
    fn start(scrape_configs: &str) -> Prometheus {
        let directory = tempfile::tempdir().expect("tempdir");
        let config = directory.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n{scrape_configs}"),
        )
        .expect("write prometheus.yml");
        let status = Command::new("promtool")
            .args(["check", "config"])
            .arg(&config)
            .output()
            .expect("promtool");
        assert!(
            status.status.success(),
            "the generated Prometheus configuration is bad: {}",
            String::from_utf8_lossy(&status.stdout)
        );
        let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                directory.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"));
        let running = Running::spawn(command, false);
        wait_for("Prometheus to be ready", || {
            http_get(address, "/-/ready").filter(|(status, _)| *status == 200)
        });
        Prometheus {
            _running: running,
            address,
            _directory: directory,
        }
    }

    /// An instant query: (labels, value) per series.
    fn query(&self, promql: &str) -> Vec<(Value, f64)> {
        let encoded: String = url_encode(promql);
        let Some((200, body)) = http_get(self.address, &format!("/api/v1/query?query={encoded}"))
        else {
            return Vec::new();
        };
        let json: Value = serde_json::from_str(&body).expect("JSON from the query API");
        json["data"]["result"]
            .as_array()
            .map(|series| {
                series
                    .iter()
                    .filter_map(|one| {
                        let value = one["value"][1].as_str()?.parse().ok()?;
                        Some((one["metric"].clone(), value))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `promql` has a series whose value satisfies `accept`; returns the value.
    fn wait_value(&self, promql: &str, accept: impl Fn(f64) -> bool) -> f64 {
        wait_for(
            &format!("Prometheus to return a matching value for {promql}"),
            || {
                self.query(promql)
                    .into_iter()
                    .map(|(_, value)| value)
                    .find(|value| accept(*value))
            },
        )
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn prerequisites() -> bool {
    for program in ["prometheus", "promtool"] {
        if !installed(program) {
            eprintln!("skipping: {program} is not installed (Debian package prometheus)");
            return false;
        }
    }
    true
}

/// The scrape configuration blackbox_exporter's README gives for ICMP, with only the
/// exporter's address changed.
fn blackbox_job(exporter: SocketAddr) -> String {
    format!(
        "  - job_name: blackbox\n    metrics_path: /probe\n    params:\n      module: [icmp]\n    \
         static_configs:\n      - targets:\n        - 127.0.0.1\n    relabel_configs:\n      \
         - source_labels: [__address__]\n        target_label: __param_target\n      \
         - source_labels: [__param_target]\n        target_label: instance\n      \
         - target_label: __address__\n        replacement: {exporter}\n"
    )
}

#[test]
fn prometheus_scrapes_success_and_the_injected_loss() {
    if !prerequisites() {
        return;
    }
    let (_reflector, endpoint) = reflector();
    // 20 % of the requests are dropped by the impairment adapter on the way out. The clean
    // target waits 30 s for a reply, so a stalled machine (stalls of 0.7 s were seen under
    // load) makes a reply late, never lost.
    let mut config = format!(
        "[modules.lossy]\nprober = \"ping\"\npackets = 20\nspacing = \"1ms\"\ntimeout = \"300ms\"\n\
         impair = \"loss=0.2&seed=11\"\n\n[modules.clean]\nprober = \"ping\"\npackets = 5\n\
         spacing = \"1ms\"\ntimeout = \"30s\"\n\n\
         [[targets]]\nname = \"lossy\"\nmodule = \"lossy\"\ntarget = \"{endpoint}\"\ninterval = \"100ms\"\n\n\
         [[targets]]\nname = \"clean\"\nmodule = \"clean\"\ntarget = \"{endpoint}\"\ninterval = \"200ms\"\n"
    );
    let root = support::is_root();
    if root {
        config.push_str(
            "\n[[targets]]\nname = \"lo4\"\nmodule = \"icmp\"\ntarget = \"127.0.0.1\"\ninterval = \"500ms\"\n",
        );
    } else {
        eprintln!("not root: ICMP targets and the blackbox /probe job are left out (raw sockets)");
    }
    let exporter = Exporter::start(&config);
    let mut jobs = format!(
        "  - job_name: loopscope\n    static_configs:\n      - targets: ['{}']\n",
        exporter.address
    );
    if root {
        jobs.push_str(&blackbox_job(exporter.address));
    }
    let prometheus = Prometheus::start(&jobs);

    prometheus.wait_value(
        "loopscope_probe_success{job=\"loopscope\",target=\"clean\"}",
        |v| v == 1.0,
    );
    if root {
        prometheus.wait_value(
            "loopscope_probe_success{job=\"loopscope\",target=\"lo4\"}",
            |v| v == 1.0,
        );
        // The blackbox job: the scrape config written for blackbox_exporter, unchanged.
        prometheus.wait_value(
            "probe_success{job=\"blackbox\",instance=\"127.0.0.1\"}",
            |v| v == 1.0,
        );
        let rtt = prometheus.wait_value(
            "probe_icmp_duration_seconds{job=\"blackbox\",phase=\"rtt\"}",
            |v| v > 0.0,
        );
        assert!(rtt < 0.1, "a loopback RTT of {rtt} s");
    }
    // At least 1,000 requests before judging the ratio: the binomial standard deviation of
    // the measured loss is then at most 0.0127, and 0.2 ± 0.06 is more than 4 of them.
    prometheus.wait_value(
        "loopscope_probe_packets_sent_total{target=\"lossy\"}",
        |v| v >= 1000.0,
    );
    let ratio = prometheus.wait_value(
        "loopscope_probe_packets_lost_total{target=\"lossy\"} / loopscope_probe_packets_sent_total{target=\"lossy\"}",
        |v| v.is_finite(),
    );
    assert!(
        (0.14..=0.26).contains(&ratio),
        "measured loss {ratio}, injected 0.2"
    );
    let clean = prometheus.wait_value(
        "loopscope_probe_packets_lost_total{target=\"clean\"}",
        |v| v.is_finite(),
    );
    assert_eq!(clean, 0.0, "the clean target lost packets");

    // Every query of the shipped Grafana dashboard is PromQL this Prometheus accepts.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repository().join("deploy/grafana/loopscope-dashboard.json"))
            .expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str().filter(|e| !e.is_empty()) else {
                continue;
            };
            let promql = expr.replace("$instance", ".*").replace("$job", ".*");
            let (status, body) = http_get(
                prometheus.address,
                &format!("/api/v1/query?query={}", url_encode(&promql)),
            )
            .expect("the query API");
            assert_eq!(status, 200, "{promql}: {body}");
            assert!(body.contains("\"status\":\"success\""), "{promql}: {body}");
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} dashboard queries");
}

#[test]
fn a_doctor_check_flips_when_lo_goes_down_in_a_namespace() {
    if !prerequisites() {
        return;
    }
    let Some(netns) = support::Netns::create("lsexp", "doctor") else {
        return;
    };
    netns.exec("ip", &["link", "set", "lo", "up"]);
    let exporter = Exporter::start(&format!(
        "[modules.ns]\nprober = \"doctor\"\nnetns = \"{}\"\nchecks = [\"lo_up\"]\n\n\
         [[targets]]\nname = \"ns\"\nmodule = \"ns\"\ninterval = \"300ms\"\n",
        netns.name
    ));
    let prometheus = Prometheus::start(&format!(
        "  - job_name: loopscope\n    static_configs:\n      - targets: ['{}']\n",
        exporter.address
    ));
    prometheus.wait_value(
        "loopscope_doctor_check{target=\"ns\",check=\"lo_up\",status=\"pass\"}",
        |v| v == 1.0,
    );
    netns.exec("ip", &["link", "set", "lo", "down"]);
    prometheus.wait_value(
        "loopscope_doctor_check{target=\"ns\",check=\"lo_up\",status=\"fail\"}",
        |v| v == 1.0,
    );
    prometheus.wait_value(
        "loopscope_probe_success{target=\"ns\",module=\"ns\"}",
        |v| v == 0.0,
    );
}

#[test]
fn promtool_accepts_the_exposition_and_the_shipped_rules() {
    if !prerequisites() {
        return;
    }
    let (_reflector, endpoint) = reflector();
    let exporter = Exporter::start(&format!(
        "[modules.link]\nprober = \"ping\"\npackets = 3\nspacing = \"1ms\"\n\n\
         [[targets]]\nname = \"link\"\nmodule = \"link\"\ntarget = \"{endpoint}\"\ninterval = \"100ms\"\n\n\
         [[targets]]\nname = \"host\"\nmodule = \"doctor\"\ninterval = \"200ms\"\n\n\
         [[targets]]\nname = \"sockets\"\nmodule = \"listeners\"\ninterval = \"200ms\"\n"
    ));
    // Every family present: a ping, a doctor run and a listeners snapshot have been recorded.
    let text = wait_for("all three targets to have been probed", || {
        let text = exporter.metrics();
        let probed = |target: &str, module: &str| {
            sample(
                &text,
                &format!("loopscope_probes_total{{target=\"{target}\",module=\"{module}\"}}"),
            )
            .is_some_and(|count| count > 0.0)
        };
        (probed("link", "link") && probed("host", "doctor") && probed("sockets", "listeners"))
            .then_some(text)
    });
    assert!(text.contains("loopscope_doctor_check{"));
    assert!(text.contains("loopscope_listeners_exposed{"));
    assert!(text.contains("loopscope_probe_rtt_seconds_bucket{"));
    // /probe over the same link module, as a blackbox-style scrape would ask for it.
    let (status, probe) = http_get(
        exporter.address,
        &format!("/probe?module=link&target={}", url_encode(&endpoint)),
    )
    .expect("GET /probe");
    assert_eq!(status, 200, "{probe}");
    assert_eq!(sample(&probe, "probe_success"), Some(1.0), "{probe}");
    assert_eq!(sample(&probe, "probe_packets_sent"), Some(3.0), "{probe}");
    for (what, input) in [("/metrics", text), ("/probe", probe)] {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        let output = child.wait_with_output().expect("promtool");
        assert!(
            output.status.success(),
            "promtool check metrics refused {what}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let rules = repository().join("deploy/prometheus/loopscope-rules.yml");
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool");
    assert!(
        output.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn sighup_keeps_the_running_config_when_the_new_one_is_broken_and_counters_survive_a_good_one() {
    let (_reflector, endpoint) = reflector();
    let target = |name: &str| {
        format!(
            "\n[[targets]]\nname = \"{name}\"\nmodule = \"link\"\ntarget = \"{endpoint}\"\ninterval = \"100ms\"\n"
        )
    };
    let module = "[modules.link]\nprober = \"ping\"\npackets = 2\nspacing = \"1ms\"\n";
    let exporter = Exporter::start(&format!("{module}{}{}", target("a"), target("b")));
    let sent_a = "loopscope_probe_packets_sent_total{target=\"a\",module=\"link\"}";
    wait_for("target a to send", || {
        sample(&exporter.metrics(), sent_a).filter(|sent| *sent >= 4.0)
    });

    // A broken file: refused with its line, the old targets go on.
    let broken = format!(
        "{module}{}\n[[targets]]\nname = \"c\"\nmodule = \"missing\"\n",
        target("a")
    );
    let broken_line = broken
        .lines()
        .position(|line| line.contains("missing"))
        .expect("the line")
        + 1;
    std::fs::write(&exporter.config, &broken).unwrap();
    exporter.running.signal("HUP");
    let (line, before) = exporter.running.line_with("reload");
    assert!(
        before.is_empty(),
        "unexpected lines before the reload's: {before:?}"
    );
    assert!(
        line.contains("refused")
            && line.contains(&format!("line {broken_line}:"))
            && line.contains("no module named 'missing'"),
        "{line}"
    );
    let text = exporter.metrics();
    assert_eq!(
        sample(
            &text,
            "loopscope_exporter_config_reloads_total{result=\"failure\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "loopscope_exporter_config_last_reload_successful"),
        Some(0.0)
    );
    // b, which the refused file left out, is still probed.
    let probes_b = "loopscope_probes_total{target=\"b\",module=\"link\"}";
    let first_b = sample(&text, probes_b).expect("b is still exported");
    wait_for("b to probe again after the refused reload", || {
        sample(&exporter.metrics(), probes_b).filter(|count| *count > first_b)
    });

    // A good file: b goes, c comes, a keeps its counters.
    let sent_before = sample(&exporter.metrics(), sent_a).expect("a's counter");
    std::fs::write(
        &exporter.config,
        format!("{module}{}{}", target("a"), target("c")),
    )
    .unwrap();
    exporter.running.signal("HUP");
    let (line, _) = exporter.running.line_with("reload");
    assert!(
        line.contains("1 added, 1 removed, 0 changed, 1 unchanged"),
        "{line}"
    );
    let text = wait_for("c to be probed", || {
        let text = exporter.metrics();
        sample(
            &text,
            "loopscope_probe_packets_sent_total{target=\"c\",module=\"link\"}",
        )
        .filter(|sent| *sent > 0.0)
        .map(|_| text)
    });
    assert!(!text.contains("target=\"b\""), "b is still exported");
    let sent_after = sample(&text, sent_a).expect("a's counter");
    assert!(
        sent_after >= sent_before,
        "a's counter went from {sent_before} back to {sent_after}"
    );
    assert_eq!(
        sample(
            &text,
            "loopscope_exporter_config_reloads_total{result=\"success\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn a_bad_config_is_refused_with_its_line_and_exit_2() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[targets]]\nname = \"a\"\nmodule = \"icmp\"\ntarget = \"127.0.0.1\"\ninterval = \"often\"\n",
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["exporter", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("loopscope: error: ") && stderr.contains("line 5:"),
        "{stderr}"
    );
    // The shipped example is good.
    let output = Command::new(BIN)
        .args(["exporter", "--check", "--config"])
        .arg(repository().join("deploy/loopscope.toml"))
        .output()
        .unwrap();
    assert_exit(&output, 0);
}

#[test]
fn a_stamp_target_counts_round_trips_and_both_directions() {
    let mut command = Command::new(BIN);
    command.args(["--json", "stamp", "--reflect", "udp://127.0.0.1:0"]);
    let reflector = Running::spawn(command, true);
    let (line, _) = reflector.line_with("\"listening\"");
    let event: Value = serde_json::from_str(&line).expect("JSON");
    let endpoint = event["endpoint"].as_str().expect("endpoint").to_string();
    let exporter = Exporter::start(&format!(
        "[modules.stamp]\nprober = \"stamp\"\npackets = 5\nspacing = \"1ms\"\ntimeout = \"500ms\"\n\n\
         [[targets]]\nname = \"refl\"\nmodule = \"stamp\"\ntarget = \"{endpoint}\"\ninterval = \"100ms\"\n"
    ));
    let labels = "{target=\"refl\",module=\"stamp\"}";
    let text = wait_for("STAMP probes", || {
        let text = exporter.metrics();
        sample(
            &text,
            &format!("loopscope_probe_packets_sent_total{labels}"),
        )
        .filter(|sent| *sent >= 20.0)
        .map(|_| text)
    });
    let sent = sample(
        &text,
        &format!("loopscope_probe_packets_sent_total{labels}"),
    )
    .unwrap();
    let received = sample(
        &text,
        &format!("loopscope_probe_packets_received_total{labels}"),
    )
    .unwrap();
    assert_eq!(sent, received, "a clean reflector on loopback lost packets");
    assert_eq!(
        sample(&text, &format!("loopscope_probe_rtt_seconds_count{labels}")),
        Some(received)
    );
    for direction in ["forward", "backward"] {
        let delay = sample(
            &text,
            &format!(
                "loopscope_stamp_one_way_delay_seconds{{target=\"refl\",module=\"stamp\",direction=\"{direction}\"}}"
            ),
        )
        .expect("a one-way delay");
        assert!(delay.abs() < 0.1, "{direction} delay {delay} s on loopback");
    }
}

/// Prometheus sends its scrape timeout in X-Prometheus-Scrape-Timeout-Seconds; like
/// blackbox_exporter, `/probe` ends the probe by then, less half a second for the answer to
/// travel. The module here would take at least 9 s (10 requests 1 s apart, each answered by
/// the reflector); with a 2 s scrape timeout the probe stops after 1.5 s and reports what it
/// measured until then. A header that is not a number is refused.
#[test]
fn probe_honours_the_scrape_timeout_header() {
    let (_reflector, endpoint) = reflector();
    let exporter = Exporter::start(
        "[modules.slow]\nprober = \"ping\"\npackets = 10\nspacing = \"1s\"\ntimeout = \"1s\"\n",
    );
    let path = format!("/probe?module=slow&target={}", url_encode(&endpoint));
    let (status, body) = http_get_with(
        exporter.address,
        &path,
        "X-Prometheus-Scrape-Timeout-Seconds: 2\r\n",
    )
    .expect("GET /probe");
    assert_eq!(status, 200, "{body}");
    let duration = sample(&body, "probe_duration_seconds").expect("probe_duration_seconds");
    assert!(
        (1.5..9.0).contains(&duration),
        "the probe took {duration} s: not bounded to 2 - 0.5 s\n{body}"
    );
    let sent = sample(&body, "probe_packets_sent").expect("probe_packets_sent");
    assert!(
        (1.0..=2.0).contains(&sent),
        "{sent} requests in 1.5 s at 1 s apart"
    );
    assert_eq!(sample(&body, "probe_success"), Some(1.0), "{body}");
    let (status, body) = http_get_with(
        exporter.address,
        &path,
        "X-Prometheus-Scrape-Timeout-Seconds: soon\r\n",
    )
    .expect("GET /probe");
    assert_eq!(status, 400);
    assert!(
        body.contains("X-Prometheus-Scrape-Timeout-Seconds"),
        "{body}"
    );
}

/// Sends frames out of an interface: run inside a namespace by the martians module test
/// (`martians_support::inject_in_netns`), not on its own.
#[test]
#[ignore = "helper run inside a network namespace by the martians module test"]
fn exporter_inject_helper() {
    martians_support::inject_from_env();
}

/// The `martians` module: a capture on one end of a veth pair in a namespace the test creates,
/// while frames are sent out of the other end through an AF_PACKET socket (routing would refuse
/// a 127.0.0.1 source). The frames are built byte by byte by the test support (RFC 791, IEEE
/// 802.3), not by the code under test. Three spoofed 127.0.0.1 packets and two clean ones move
/// `loopscope_martian_packets_total{reason="loopback_source"}` by exactly three and the packets
/// seen by five.
#[test]
fn the_martians_module_counts_spoofed_loopback_by_reason() {
    use martians_support::{MAC_A, MAC_B, ethernet, ipv4_udp};
    let Some(netns) = support::Netns::create("lsexp", "martians") else {
        return;
    };
    // No IPv6 on the new links: no router solicitations or MLD reports to count.
    for scope in ["all", "default"] {
        netns.exec(
            "sysctl",
            &["-q", "-w", &format!("net.ipv6.conf.{scope}.disable_ipv6=1")],
        );
    }
    netns.exec(
        "ip",
        &[
            "link", "add", "lsx0", "type", "veth", "peer", "name", "lsx1",
        ],
    );
    netns.exec(
        "ip",
        &["link", "set", "lsx0", "address", "02:00:5e:10:00:01"],
    );
    netns.exec(
        "ip",
        &["link", "set", "lsx1", "address", "02:00:5e:10:00:02"],
    );
    for interface in ["lo", "lsx0", "lsx1"] {
        netns.exec("ip", &["link", "set", interface, "up"]);
    }
    netns.exec("ip", &["addr", "add", "10.77.0.2/24", "dev", "lsx1"]);
    let exporter = Exporter::start(&format!(
        "[modules.spoof]\nprober = \"martians\"\nnetns = \"{}\"\n\n\
         [[targets]]\nname = \"veth\"\nmodule = \"spoof\"\ntarget = \"lsx1\"\n",
        netns.name
    ));
    let spoofed = ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &ipv4_udp([127, 0, 0, 1], [10, 77, 0, 2], 4000, 9),
    );
    let clean = ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &ipv4_udp([10, 77, 0, 1], [10, 77, 0, 2], 4000, 9),
    );
    let inject = |frames: &[&Vec<u8>]| {
        let frames: Vec<&[u8]> = frames.iter().map(|frame| frame.as_slice()).collect();
        martians_support::inject_in_netns(&netns.name, "lsx0", "exporter_inject_helper", &frames);
    };
    let by_reason = |reason: &str| {
        format!(
            "loopscope_martian_packets_total{{target=\"veth\",module=\"spoof\",reason=\"{reason}\"}}"
        )
    };
    // The capture starts in its own time: until it counts one, send packets from a class E
    // source (RFC 1112), another reason, so that none of these can be mistaken for the
    // loopback ones counted next.
    let class_e = ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &ipv4_udp([240, 0, 0, 1], [10, 77, 0, 2], 4000, 9),
    );
    wait_for("the capture to count a class E source", || {
        inject(&[&class_e]);
        sample(&exporter.metrics(), &by_reason("class_e_source"))
    });
    inject(&[&spoofed, &clean, &spoofed, &clean, &spoofed]);
    let text = wait_for("three loopback sources counted", || {
        let text = exporter.metrics();
        (sample(&text, &by_reason("loopback_source"))? >= 3.0).then_some(text)
    });
    assert_eq!(
        sample(&text, &by_reason("loopback_source")),
        Some(3.0),
        "the loopback_source count is not the three sent:\n{text}"
    );
    let seen = sample(
        &text,
        "loopscope_capture_packets_total{target=\"veth\",module=\"spoof\"}",
    )
    .expect("packets seen");
    assert!(
        seen >= 6.0,
        "{seen} packets seen: the clean ones were not looked at\n{text}"
    );
    assert_eq!(
        sample(
            &text,
            "loopscope_probe_success{target=\"veth\",module=\"spoof\"}"
        ),
        None,
        "a capture that has not ended has no probe result yet"
    );
}

/// The `bert` module runs without end over its link, its counters live on /metrics: over a
/// clean simulated link no bit error, over one that flips a bit in a thousand, errors and
/// errored seconds (the error rate the simulator injects is the reference).
#[test]
fn bert_targets_count_bits_and_the_injected_errors() {
    let exporter = Exporter::start(
        "[modules.soak]\nprober = \"bert\"\n\n\
         [[targets]]\nname = \"clean\"\nmodule = \"soak\"\ntarget = \"sim:?rate=1M\"\n\n\
         [[targets]]\nname = \"noisy\"\nmodule = \"soak\"\ntarget = \"sim:?rate=1M&ber=1e-3\"\n",
    );
    let series =
        |name: &str, target: &str| format!("{name}{{target=\"{target}\",module=\"soak\"}}");
    let text = wait_for("two whole seconds of each BERT", || {
        let text = exporter.metrics();
        let enough = ["clean", "noisy"].iter().all(|target| {
            sample(&text, &series("loopscope_bert_seconds_total", target)).is_some_and(|s| s >= 2.0)
        });
        enough.then_some(text)
    });
    let value = |name: &str, target: &str| sample(&text, &series(name, target)).expect(name);
    assert!(value("loopscope_bert_bits_total", "clean") > 0.0, "{text}");
    assert_eq!(
        value("loopscope_bert_bit_errors_total", "clean"),
        0.0,
        "{text}"
    );
    assert!(
        value("loopscope_bert_bit_errors_total", "noisy") > 0.0,
        "{text}"
    );
    assert!(
        value("loopscope_bert_errored_seconds_total", "noisy") >= 1.0,
        "{text}"
    );
    assert_eq!(value("loopscope_bert_runs_total", "clean"), 1.0, "{text}");
}

/// The exporter's ICMP round trips against a packet capture on lo, the reference the CLI's
/// figures are held against too (tests/ping_icmp.rs): a round trip is taken from the clock read
/// just before the send call to the kernel's receive stamp of the reply, and the reply's stamp
/// on lo is that very receive stamp, so no figure may be shorter than the request-to-reply time
/// the capture shows for its packet. The exporter keeps only a histogram (1 us buckets here),
/// so the check is on the smallest: the capture runs from before the exporter's first request
/// to after its last, so it holds every packet the scraped histogram counts, and the lowest
/// occupied bucket's upper bound must not lie below the shortest captured exchange (give or take
/// the 1 us allowed in moving the kernel's stamp onto the monotonic clock). Were the send time
/// read after the call, as it once was in the CLI, every figure would be under 1 us.
#[test]
fn no_exporter_round_trip_reads_shorter_than_the_captured_exchanges() {
    if !support::is_root() {
        eprintln!("skipping: raw ICMP sockets and tcpdump need root");
        return;
    }
    if !installed("tcpdump") || !installed("tshark") {
        eprintln!(
            "skipping: tcpdump and tshark are the reference (apt-get install tcpdump tshark)"
        );
        return;
    }
    // A loopback address of this test's own, so other programs' pings on lo are not captured.
    const ADDRESS: &str = "127.77.15.15";
    const TOLERANCE_S: f64 = 1e-6;
    let directory = tempfile::tempdir().expect("tempdir");
    let file = directory.path().join("echo.pcap");
    // --immediate-mode: each packet is handed over at once, not when a block of the ring
    // fills or times out.
    let mut tcpdump = support::tshark::capture(
        Command::new("tcpdump"),
        "lo",
        &["--immediate-mode"],
        &file,
        &format!(
            "icmp and host {ADDRESS} and (icmp[icmptype] == icmp-echo or \
             icmp[icmptype] == icmp-echoreply)"
        ),
    );

    let buckets: Vec<String> = (1..=1000).map(|us| format!("{us}e-6")).collect();
    let exporter = Exporter::start(&format!(
        "[modules.burst]\nprober = \"icmp\"\npackets = 5\nspacing = \"10ms\"\n\
         timeout = \"1s\"\nrtt_buckets = [{}]\n\n\
         [[targets]]\nname = \"lo\"\nmodule = \"burst\"\ntarget = \"{ADDRESS}\"\n\
         source = \"{ADDRESS}\"\ninterval = \"100ms\"\n",
        buckets.join(", ")
    ));
    let count_series = "loopscope_probe_rtt_seconds_count{target=\"lo\",module=\"burst\"}";
    let metrics = wait_for("20 round trips in the exporter's histogram", || {
        let text = exporter.metrics();
        (sample(&text, count_series)? >= 20.0).then_some(text)
    });
    drop(exporter);
    // A last request of another size, sent after the exporter is gone: once its reply is in
    // the file, every packet before it is too.
    let sentinel = Command::new(BIN)
        .args(["ping", &format!("icmp://{ADDRESS}"), "-c", "1", "-s", "200"])
        .output()
        .expect("run loopscope ping");
    assert_exit(&sentinel, 0);
    let read_capture = || {
        let fields = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&file)
            .args([
                "-T",
                "fields",
                "-E",
                "separator=,",
                "-e",
                "frame.time_epoch",
            ])
            .args(["-e", "icmp.type", "-e", "icmp.ident", "-e", "icmp.seq"])
            .args(["-e", "frame.len"])
            .output()
            .expect("run tshark");
        String::from_utf8_lossy(&fields.stdout).into_owned()
    };
    // 14 + 20 + 8 + 200 bytes: the sentinel's reply.
    let text = wait_for("the sentinel's reply in the capture", || {
        let text = read_capture();
        text.lines()
            .any(|line| line.contains(",0,") && line.ends_with(",242"))
            .then_some(text)
    });
    let _ = Command::new("kill")
        .args(["-INT", &tcpdump.id().to_string()])
        .status();
    let status = tcpdump.wait().expect("wait for tcpdump");
    assert!(status.success(), "tcpdump failed");

    // The lowest occupied bucket.
    let mut below = 0.0;
    let mut lowest_bound_s = None;
    for bound in &buckets {
        let series = format!(
            "loopscope_probe_rtt_seconds_bucket{{target=\"lo\",module=\"burst\",le=\"{}\"}}",
            bound.parse::<f64>().expect("bound")
        );
        let Some(cumulative) = sample(&metrics, &series) else {
            continue;
        };
        if cumulative > below {
            lowest_bound_s = Some(bound.parse::<f64>().expect("bound"));
            break;
        }
        below = cumulative;
    }
    let lowest_bound_s = lowest_bound_s.expect("an occupied bucket at or under 1 ms");

    let mut requests = std::collections::HashMap::new();
    let mut wire_s = Vec::new();
    for line in text.lines() {
        let columns: Vec<&str> = line.split(',').collect();
        let [at, kind, identifier, sequence, length] = columns[..] else {
            continue;
        };
        let Some(at) = support::tshark::epoch_ns(at) else {
            continue;
        };
        if length == "242" {
            continue; // the sentinel
        }
        let key = (identifier.to_string(), sequence.to_string());
        match kind {
            "8" => {
                requests.insert(key, at);
            }
            "0" => {
                if let Some(request) = requests.remove(&key) {
                    wire_s.push(at.saturating_sub(request) as f64 / 1e9);
                }
            }
            _ => {}
        }
    }
    let counted = sample(&metrics, count_series).expect("count");
    assert!(
        wire_s.len() as f64 >= counted,
        "the capture holds {} exchanges, fewer than the {counted} the histogram counts",
        wire_s.len()
    );
    let shortest_s = wire_s.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        lowest_bound_s + TOLERANCE_S >= shortest_s,
        "the exporter counted a round trip of at most {:.1} us, but no captured request and \
         reply crossed lo less than {:.3} us apart",
        lowest_bound_s * 1e6,
        shortest_s * 1e6
    );
}

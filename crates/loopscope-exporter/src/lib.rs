//! `loopscope exporter`: loopscope's tests on a schedule, served to Prometheus.
//!
//! - `config`: the TOML file (modules and targets), checked whole, errors with their line;
//! - `probe`: one probe of one target, calling the same engines as the CLI commands;
//! - `metrics`: what is kept per target and how it becomes Prometheus metrics (the text
//!   encoding is `loopscope_report::prometheus`);
//! - [`Exporter`]: the scheduler, the probe threads and the HTTP server (`/metrics`, and a
//!   blackbox_exporter-compatible `/probe?module=M&target=T`).
//!
//! Probes are blocking runs of the measure engines on a pool of threads, not tasks on an async
//! runtime: the ping engine times its packets on one thread that waits exactly until the next
//! thing is due, and takes its times exactly as `loopscope ping` and iputils `ping` do (the
//! clock read just before the send call, the kernel's receive timestamp). On loopback most of a
//! round trip is that send call, and it is shorter when the CPU did not idle before it: the
//! first request of a burst follows the probe's own set-up (hand-over, socket, connect), so it
//! reads lower than the requests after a wait, as the first request of a fresh `ping -c 5`
//! does (docs/benchmarks.md, "Fourth session"). A scheduler thread hands due probes to the pool; how late a probe starts compared with its
//! due time is the exporter's scheduling lag, exported as a histogram. (A pool that grows on
//! demand, leader/followers, and handing probes over early to a thread that sleeps until the
//! due time were each tried and measured: none lowered the lag on the loaded bench machine,
//! and each cost more CPU or memory; see docs/benchmarks.md.)

#![forbid(unsafe_code)]

mod bert;
mod config;
mod martians;
mod metrics;
mod probe;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use loopscope_report::prometheus::{self, Exposition, Histogram, MetricKind};

pub use config::{Config, ConfigError, Module, Prober, Target};
use metrics::TargetMetrics;

/// The port the exporter listens on by default. Prometheus' list of default ports
/// (9100-9999) has been fully allocated since 2023, so every port in that range is some
/// exporter's; 9469 is the one the issue proposed.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9469";

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// The HTTP listener could not be opened.
    #[error("cannot listen on {address}: {reason}")]
    Listen {
        /// The address asked for.
        address: String,
        /// Why.
        reason: String,
    },
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[from] io::Error),
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReloadSummary {
    /// Targets that were new.
    pub added: Vec<String>,
    /// Targets that are gone.
    pub removed: Vec<String>,
    /// Targets whose settings changed (their counters start again when the module changed).
    pub changed: Vec<String>,
    /// Targets left as they were (schedule and counters untouched).
    pub kept: usize,
}

/// One target's metrics, shared by the probe thread that updates them and the scrapes.
type SharedMetrics = Arc<Mutex<TargetMetrics>>;

struct Slot {
    target: Arc<Target>,
    module: Arc<Module>,
    generation: u64,
    busy: Arc<AtomicBool>,
    metrics: Arc<Mutex<TargetMetrics>>,
    /// A continuous BERT's own thread (bert modules are not scheduled probes); setting the flag
    /// ends it.
    runner: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Slot {
    fn stop_runner(&mut self) {
        if let Some((stop, _)) = &self.runner {
            stop.store(true, Ordering::SeqCst);
        }
    }
}

struct Schedule {
    config: Arc<Config>,
    slots: BTreeMap<String, Slot>,
    /// (due, generation, target name): the earliest first.
    heap: BinaryHeap<Reverse<(Instant, u64, String)>>,
    next_generation: u64,
}

struct Job {
    target: Arc<Target>,
    module: Arc<Module>,
    busy: Arc<AtomicBool>,
    metrics: Arc<Mutex<TargetMetrics>>,
    due: Instant,
}

struct Health {
    lag: Histogram,
    reloads_ok: u64,
    reloads_failed: u64,
    last_reload_ok: bool,
    last_reload_unix_s: f64,
}

struct Shared {
    schedule: Mutex<Schedule>,
    wake: Condvar,
    health: Mutex<Health>,
    skipped: AtomicU64,
    in_flight: AtomicU64,
    stop: Arc<AtomicBool>,
}

/// A running exporter. Dropping it does not stop it; call [`Exporter::shutdown`].
pub struct Exporter {
    shared: Arc<Shared>,
    address: SocketAddr,
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
}

/// Buckets of the scheduling-lag histogram: 10 µs to about 5 s.
fn lag_buckets() -> Vec<f64> {
    let mut bounds = Histogram::exponential_bounds(1e-5, 2.0, 20);
    // 1 ms and 2 ms exactly, the figures the lag is judged by.
    bounds.extend([0.001, 0.002]);
    bounds
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A probe thread that panicked leaves the data as it was: still worth serving.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where in its interval a target's probes fall: spread by its name, so a thousand targets
/// with the same interval do not all fire at once, and stable across restarts and reloads.
fn phase(name: &str, interval: Duration) -> Duration {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    let nanos = u64::try_from(interval.as_nanos())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_nanos(hasher.finish() % nanos)
}

impl Exporter {
    /// Starts the probe threads, the scheduler and the HTTP server on `listen`.
    pub fn start(
        config: Config,
        listen: &str,
        stop: Arc<AtomicBool>,
    ) -> Result<Exporter, ExporterError> {
        let server = tiny_http::Server::http(listen).map_err(|error| ExporterError::Listen {
            address: listen.to_string(),
            reason: error.to_string(),
        })?;
        let address = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| ExporterError::Listen {
                address: listen.to_string(),
                reason: "not an IP address".into(),
            })?;
        let server = Arc::new(server);
        let workers = config.workers;
        let shared = Arc::new(Shared {
            schedule: Mutex::new(Schedule {
                config: Arc::new(config.clone()),
                slots: BTreeMap::new(),
                heap: BinaryHeap::new(),
                next_generation: 1,
            }),
            wake: Condvar::new(),
            health: Mutex::new(Health {
                lag: Histogram::new(&lag_buckets()),
                reloads_ok: 0,
                reloads_failed: 0,
                last_reload_ok: true,
                last_reload_unix_s: unix_now(),
            }),
            skipped: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            stop,
        });
        apply(&shared, config);

        let mut threads = Vec::new();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        for index in 0..workers {
            let shared = Arc::clone(&shared);
            let jobs = Arc::clone(&jobs_rx);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("probe-{index}"))
                    .stack_size(512 * 1024)
                    .spawn(move || worker(&shared, &jobs))?,
            );
        }
        {
            let shared = Arc::clone(&shared);
            threads.push(
                std::thread::Builder::new()
                    .name("scheduler".into())
                    .spawn(move || scheduler(&shared, &jobs_tx))?,
            );
        }
        for index in 0..4 {
            let shared = Arc::clone(&shared);
            let server = Arc::clone(&server);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("http-{index}"))
                    .spawn(move || serve(&shared, &server))?,
            );
        }
        Ok(Exporter {
            shared,
            address,
            server,
            threads,
        })
    }

    /// The address the HTTP server listens on (the real port when 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Replaces the configuration: targets that are new start, targets that are gone stop,
    /// and targets that did not change keep their schedule and their counters.
    pub fn reload(&self, config: Config) -> ReloadSummary {
        let summary = apply(&self.shared, config);
        let mut health = lock(&self.shared.health);
        health.reloads_ok += 1;
        health.last_reload_ok = true;
        health.last_reload_unix_s = unix_now();
        summary
    }

    /// Counts a reload that was refused (the running configuration stays).
    pub fn reload_failed(&self) {
        let mut health = lock(&self.shared.health);
        health.reloads_failed += 1;
        health.last_reload_ok = false;
        health.last_reload_unix_s = unix_now();
    }

    /// The `/metrics` text now.
    pub fn render(&self) -> String {
        render_metrics(&self.shared)
    }

    /// Stops everything and waits for the threads (a probe in flight ends at its next packet).
    pub fn shutdown(self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // The scheduler looks at the flag with the schedule locked, then waits: taking the
        // lock here puts the notification after its wait began, or its look after the store.
        drop(lock(&self.shared.schedule));
        self.shared.wake.notify_all();
        self.server.unblock();
        for _ in 0..8 {
            self.server.unblock();
        }
        for thread in self.threads {
            let _ = thread.join();
        }
        let runners: Vec<JoinHandle<()>> = {
            let mut schedule = lock(&self.shared.schedule);
            schedule
                .slots
                .values_mut()
                .filter_map(|slot| slot.runner.take().map(|(_, handle)| handle))
                .collect()
        };
        for runner in runners {
            let _ = runner.join();
        }
    }
}

/// The loop of a module that runs continuously (bert, martians): `run` until it ends (failed:
/// `Some(reason)`), counted as one probe of the target, then again after the target's interval,
/// until `stop` or `global_stop` is set.
fn run_continuously(
    target: &Target,
    metrics: &Mutex<TargetMetrics>,
    stop: &AtomicBool,
    global_stop: &AtomicBool,
    mut run: impl FnMut() -> Option<String>,
) {
    let stopped = || stop.load(Ordering::SeqCst) || global_stop.load(Ordering::SeqCst);
    while !stopped() {
        let started = Instant::now();
        let failed = run().is_some();
        {
            let mut metrics = lock(metrics);
            metrics.probes += 1;
            if failed {
                metrics.failures += 1;
            }
            metrics.last_success = Some(!failed);
            metrics.last_duration_s = started.elapsed().as_secs_f64();
        }
        // Wait an interval before the next run, looking at the stop flags often.
        let resume = Instant::now() + target.interval;
        while !stopped() && Instant::now() < resume {
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn apply(shared: &Arc<Shared>, config: Config) -> ReloadSummary {
    let mut summary = ReloadSummary::default();
    let now = Instant::now();
    let mut schedule = lock(&shared.schedule);
    let mut old = std::mem::take(&mut schedule.slots);
    for target in &config.targets {
        let Some(module) = config.modules.get(&target.module) else {
            continue;
        };
        let module = Arc::new(module.clone());
        let fresh = || {
            Arc::new(Mutex::new(TargetMetrics::new(
                &module.name,
                &module.rtt_buckets,
            )))
        };
        let (metrics, busy) = match old.remove(&target.name) {
            Some(slot) if *slot.target == *target && *slot.module == *module => {
                summary.kept += 1;
                schedule.slots.insert(target.name.clone(), slot);
                continue;
            }
            Some(mut slot) => {
                slot.stop_runner();
                summary.changed.push(target.name.clone());
                // Same module and buckets: the counters go on. Another module: they start
                // again (a histogram cannot change its buckets).
                let same_counters = slot.module.name == module.name
                    && slot.module.prober == module.prober
                    && slot.module.rtt_buckets == module.rtt_buckets;
                let metrics = if same_counters { slot.metrics } else { fresh() };
                (metrics, slot.busy)
            }
            None => {
                summary.added.push(target.name.clone());
                (fresh(), Arc::new(AtomicBool::new(false)))
            }
        };
        insert_slot(shared, &mut schedule, target, module, metrics, busy, now);
    }
    for slot in old.values_mut() {
        slot.stop_runner();
    }
    summary.removed = old.into_keys().collect();
    schedule.config = Arc::new(config);
    drop(schedule);
    shared.wake.notify_all();
    summary
}

fn insert_slot(
    shared: &Arc<Shared>,
    schedule: &mut Schedule,
    target: &Target,
    module: Arc<Module>,
    metrics: Arc<Mutex<TargetMetrics>>,
    busy: Arc<AtomicBool>,
    now: Instant,
) {
    let generation = schedule.next_generation;
    schedule.next_generation += 1;
    let target = Arc::new(target.clone());
    let runner = if matches!(module.prober, Prober::Bert | Prober::Martians) {
        let stop = Arc::new(AtomicBool::new(false));
        let (module, target, metrics, shared, flag) = (
            Arc::clone(&module),
            Arc::clone(&target),
            Arc::clone(&metrics),
            Arc::clone(shared),
            Arc::clone(&stop),
        );
        std::thread::Builder::new()
            .name(format!("{}-{}", module.prober.name(), target.name))
            .spawn(move || {
                run_continuously(&target, &metrics, &flag, &shared.stop, || {
                    if module.prober == Prober::Bert {
                        bert::run_once_then_unsync(&module, &target, &metrics, &flag)
                    } else {
                        martians::capture_once(&module, &target, &metrics, &flag, &shared.stop)
                    }
                });
            })
            .ok()
            .map(|handle| (stop, handle))
    } else {
        let due = now + phase(&target.name, target.interval);
        schedule
            .heap
            .push(Reverse((due, generation, target.name.clone())));
        None
    };
    schedule.slots.insert(
        target.name.clone(),
        Slot {
            target,
            module,
            generation,
            busy,
            metrics,
            runner,
        },
    );
}

fn scheduler(shared: &Shared, jobs: &mpsc::Sender<Job>) {
    let mut schedule = lock(&shared.schedule);
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        let Some(Reverse((due, generation, name))) = schedule.heap.peek().cloned() else {
            schedule = shared
                .wake
                .wait_timeout(schedule, Duration::from_secs(1))
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
            continue;
        };
        if due > now {
            schedule = shared
                .wake
                .wait_timeout(schedule, due - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
            continue;
        }
        schedule.heap.pop();
        let Some(slot) = schedule.slots.get(&name) else {
            continue;
        };
        if slot.generation != generation {
            // Replaced or removed by a reload: its new entry is in the heap already.
            continue;
        }
        if slot.busy.swap(true, Ordering::SeqCst) {
            // Still probing since the last time: skip this one rather than pile up.
            shared.skipped.fetch_add(1, Ordering::Relaxed);
        } else {
            let job = Job {
                target: Arc::clone(&slot.target),
                module: Arc::clone(&slot.module),
                busy: Arc::clone(&slot.busy),
                metrics: Arc::clone(&slot.metrics),
                due,
            };
            if jobs.send(job).is_err() {
                return;
            }
        }
        // The next one is due one interval after this one was (no drift); if the exporter fell
        // more than an interval behind, the missed ones are skipped, not run in a burst.
        let interval = slot.target.interval;
        let mut next = due + interval;
        while next <= now {
            next += interval;
            shared.skipped.fetch_add(1, Ordering::Relaxed);
        }
        schedule.heap.push(Reverse((next, generation, name)));
    }
}

fn worker(shared: &Shared, jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = {
            let receiver = lock(jobs);
            match receiver.recv_timeout(Duration::from_millis(200)) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        let lag = Instant::now().saturating_duration_since(job.due);
        lock(&shared.health).lag.observe(lag.as_secs_f64());
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = probe::run(&job.module, &job.target, &shared.stop, None);
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        lock(&job.metrics).record(&result);
        job.busy.store(false, Ordering::SeqCst);
    }
}

fn render_metrics(shared: &Shared) -> String {
    let mut out = Exposition::new();
    metrics::declare_target_families(&mut out);
    let (slots, config): (Vec<(String, SharedMetrics)>, Arc<Config>) = {
        let schedule = lock(&shared.schedule);
        (
            schedule
                .slots
                .iter()
                .map(|(name, slot)| (name.clone(), Arc::clone(&slot.metrics)))
                .collect(),
            Arc::clone(&schedule.config),
        )
    };
    for (name, metrics) in &slots {
        let snapshot = lock(metrics).clone();
        metrics::render_target(&mut out, name, &snapshot);
    }
    out.family(
        "loopscope_exporter_targets",
        MetricKind::Gauge,
        "Targets the exporter probes on its own schedule.",
    );
    out.sample(
        "loopscope_exporter_targets",
        &[],
        config.targets.len() as f64,
    );
    out.family(
        "loopscope_exporter_probes_in_flight",
        MetricKind::Gauge,
        "Probes running now.",
    );
    out.sample(
        "loopscope_exporter_probes_in_flight",
        &[],
        shared.in_flight.load(Ordering::Relaxed) as f64,
    );
    out.family(
        "loopscope_exporter_probes_skipped_total",
        MetricKind::Counter,
        "Probes not started because the target's previous probe was still running or the exporter fell an interval behind.",
    );
    out.sample(
        "loopscope_exporter_probes_skipped_total",
        &[],
        shared.skipped.load(Ordering::Relaxed) as f64,
    );
    let health = lock(&shared.health);
    out.family(
        "loopscope_exporter_scheduling_lag_seconds",
        MetricKind::Histogram,
        "How late probes started compared with when they were due.",
    );
    out.histogram(
        "loopscope_exporter_scheduling_lag_seconds",
        &[],
        &health.lag,
    );
    out.family(
        "loopscope_exporter_config_reloads_total",
        MetricKind::Counter,
        "Configuration reloads (SIGHUP), by result.",
    );
    out.sample(
        "loopscope_exporter_config_reloads_total",
        &[("result", "success")],
        health.reloads_ok as f64,
    );
    out.sample(
        "loopscope_exporter_config_reloads_total",
        &[("result", "failure")],
        health.reloads_failed as f64,
    );
    out.family(
        "loopscope_exporter_config_last_reload_successful",
        MetricKind::Gauge,
        "1 when the last configuration load succeeded, 0 when it was refused (the previous one runs on).",
    );
    out.sample(
        "loopscope_exporter_config_last_reload_successful",
        &[],
        f64::from(u8::from(health.last_reload_ok)),
    );
    out.family(
        "loopscope_exporter_config_last_reload_success_timestamp_seconds",
        MetricKind::Gauge,
        "When the configuration was last loaded or refused (Unix time).",
    );
    out.sample(
        "loopscope_exporter_config_last_reload_success_timestamp_seconds",
        &[],
        health.last_reload_unix_s,
    );
    drop(health);
    process_metrics(&mut out);
    out.render()
}

/// The standard process metrics (as Prometheus' client libraries name them).
fn process_metrics(out: &mut Exposition) {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(kib) = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
    {
        out.family(
            "process_resident_memory_bytes",
            MetricKind::Gauge,
            "Resident memory size in bytes.",
        );
        out.sample("process_resident_memory_bytes", &[], kib * 1024.0);
    }
    if let Ok(cpu) = loopscope_sys::process_cpu_time() {
        out.family(
            "process_cpu_seconds_total",
            MetricKind::Counter,
            "Total user and system CPU time spent in seconds.",
        );
        out.sample(
            "process_cpu_seconds_total",
            &[],
            (cpu.user + cpu.system).as_secs_f64(),
        );
    }
}

fn respond(request: tiny_http::Request, status: u16, content_type: &str, body: String) {
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    // The content types are constants of this file, always valid header values.
    if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", content_type) {
        response.add_header(header);
    }
    // The scraper hung up: nothing to do.
    let _ = request.respond(response);
}

fn serve(shared: &Shared, server: &tiny_http::Server) {
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let request = match server.recv_timeout(Duration::from_millis(500)) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(_) => return,
        };
        let url = request.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
        if *request.method() != tiny_http::Method::Get
            && *request.method() != tiny_http::Method::Head
        {
            respond(request, 405, "text/plain", "only GET\n".into());
            continue;
        }
        match path {
            "/metrics" => {
                let body = render_metrics(shared);
                respond(request, 200, prometheus::CONTENT_TYPE, body);
            }
            "/probe" => {
                let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect();
                let scrape_timeout = request
                    .headers()
                    .iter()
                    .find(|header| header.field.equiv(SCRAPE_TIMEOUT_HEADER))
                    .map(|header| header.value.as_str().to_string());
                let budget = match probe_budget(scrape_timeout.as_deref(), TIMEOUT_OFFSET) {
                    Ok(budget) => budget,
                    Err(message) => {
                        respond(request, 400, "text/plain", format!("{message}\n"));
                        continue;
                    }
                };
                match probe_once(shared, &params, budget) {
                    Ok(body) => respond(request, 200, prometheus::CONTENT_TYPE, body),
                    Err(message) => respond(request, 400, "text/plain", format!("{message}\n")),
                }
            }
            "/" => respond(
                request,
                200,
                "text/html; charset=utf-8",
                "<html><head><title>loopscope exporter</title></head><body>\
                 <h1>loopscope exporter</h1><p><a href=\"/metrics\">Metrics</a></p>\
                 <p>Probe: <code>/probe?module=icmp&amp;target=127.0.0.1</code></p></body></html>\n"
                    .into(),
            ),
            _ => respond(request, 404, "text/plain", "not found\n".into()),
        }
    }
}

/// The header in which Prometheus tells a target how long it will wait for the answer (its
/// `scrape_timeout`).
pub const SCRAPE_TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";

/// What a `/probe` leaves of the scrape timeout for the answer to travel, as blackbox_exporter's
/// `--timeout-offset` does by default (0.5 s).
pub const TIMEOUT_OFFSET: Duration = Duration::from_millis(500);

/// How long a `/probe` may run: the scrape timeout Prometheus sent less `offset`. No header:
/// no bound beyond the module's own. A timeout not above the offset leaves half of it, so a
/// short scrape timeout still gets a probe that ends in time. A header that is not a positive
/// number of seconds is refused.
pub fn probe_budget(header: Option<&str>, offset: Duration) -> Result<Option<Duration>, String> {
    let Some(text) = header else {
        return Ok(None);
    };
    let seconds: f64 = text
        .trim()
        .parse()
        .ok()
        .filter(|seconds: &f64| seconds.is_finite() && *seconds > 0.0)
        .ok_or_else(|| {
            format!(
                "Failed to parse timeout from Prometheus header: {SCRAPE_TIMEOUT_HEADER}: {text}"
            )
        })?;
    let timeout = Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{SCRAPE_TIMEOUT_HEADER}: {text} is out of range"))?;
    Ok(Some(if timeout > offset {
        timeout - offset
    } else {
        timeout / 2
    }))
}

/// A `/probe` request: one probe now, answered in blackbox_exporter's metric names.
fn probe_once(
    shared: &Shared,
    params: &HashMap<String, String>,
    budget: Option<Duration>,
) -> Result<String, String> {
    let target = params
        .get("target")
        .filter(|t| !t.is_empty())
        .ok_or("Target parameter is missing")?;
    let module_name = params.get("module").map_or("icmp", String::as_str);
    let config = Arc::clone(&lock(&shared.schedule).config);
    let module = config
        .modules
        .get(module_name)
        .ok_or_else(|| format!("Unknown module \"{module_name}\""))?;
    if matches!(module.prober, Prober::Bert | Prober::Martians) {
        return Err(format!(
            "module \"{module_name}\" runs continuously ({}): its figures are on /metrics",
            module.prober.name()
        ));
    }
    let probe_target = Target {
        name: target.clone(),
        module: module_name.to_string(),
        target: target.clone(),
        interval: Duration::from_secs(1),
        source: None,
        interface: None,
    };
    let result = probe::run(module, &probe_target, &shared.stop, budget);
    Ok(metrics::render_probe(&result, &module.rtt_buckets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scrape_timeout_less_the_offset_bounds_a_probe() {
        let offset = Duration::from_millis(500);
        assert_eq!(probe_budget(None, offset), Ok(None));
        assert_eq!(
            probe_budget(Some("10"), offset),
            Ok(Some(Duration::from_millis(9_500)))
        );
        assert_eq!(
            probe_budget(Some(" 1.5 "), offset),
            Ok(Some(Duration::from_secs(1)))
        );
        // Not above the offset: half of it, never zero.
        assert_eq!(
            probe_budget(Some("0.4"), offset),
            Ok(Some(Duration::from_millis(200)))
        );
        for bad in ["", "abc", "-1", "0", "NaN", "inf", "1e300"] {
            assert!(probe_budget(Some(bad), offset).is_err(), "{bad:?} accepted");
        }
    }
}

//! What the JACK-based audio tests (`audio_jack.rs`, `audio_alsa.rs`) share: a `jackd` on the
//! dummy backend under a name of its own, children ended with the signal they end cleanly on,
//! and the readings of Fons Adriaensen's `jack_delay`/`alsa_delay`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rustix::process::Signal;

/// Ends and reaps a child we started when the test ends, however it ends, with the signal it
/// ends cleanly on: SIGTERM for jackd and for loopscope (which prints its summary), SIGINT for
/// alsa_delay. Never SIGKILL: a jackd killed outright, or a JACK client that dies without
/// closing (alsa_delay on SIGTERM), leaves its slot taken in JACK's shared-memory server
/// registry; after eight of those no jackd starts on the machine until /dev/shm is cleaned.
pub struct Started(pub Child, pub Signal);

impl Started {
    /// Ended with SIGTERM.
    pub fn new(child: Child) -> Self {
        Started(child, Signal::TERM)
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        signal(&self.0, self.1);
        let _ = self.0.wait();
    }
}

/// Sends `signal` to `child` (gone already: nothing to do).
pub fn signal(child: &Child, signal: Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// SIGTERM, which ends loopscope's run cleanly with its summary.
pub fn terminate(child: &Child) {
    signal(child, Signal::TERM);
}

/// Whether `program` is an executable file on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// `program` as a client of the JACK server `server`, which must not start one of its own.
pub fn jack_command(program: &str, server: &str) -> Command {
    let mut command = Command::new(program);
    command
        .env("JACK_DEFAULT_SERVER", server)
        .env("JACK_NO_START_SERVER", "1");
    command
}

/// Starts `jackd -d dummy -r 48000 -p 256` named `server` (a real graph with real periods) and
/// waits until it answers `jack_wait`. Two servers registering at once can race in JACK's
/// shared-memory registry, so they start one at a time.
pub fn start_dummy_server(server: &str) -> Started {
    static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    let log = tempfile::NamedTempFile::new().expect("a log file");
    let jackd = Started::new(
        Command::new("jackd")
            .args(["--no-realtime", "-n", server])
            .args(["-d", "dummy", "-r", "48000", "-p", "256"])
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("log"))
            .stderr(log.reopen().expect("log"))
            .spawn()
            .expect("start jackd"),
    );
    let up = jack_command("jack_wait", server)
        .args(["-w", "-t", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("jack_wait runs");
    assert!(
        up.success(),
        "the JACK server did not come up: {}",
        std::fs::read_to_string(log.path()).unwrap_or_default()
    );
    jackd
}

/// The child's stdout, a line at a time, on a channel (a thread reads it).
pub fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The steady readings of `jack_delay` or `alsa_delay` (lines such as
/// `    256.000 frames    5.333 ms`), in frames. Their first readings may still average the
/// moment the loop was wired: of the first 8, the last 5 are kept.
pub fn delay_readings(lines: &mpsc::Receiver<String>, limit: Duration, tool: &str) -> Vec<f64> {
    let mut readings = Vec::new();
    while readings.len() < 8 {
        let line = lines
            .recv_timeout(limit)
            .unwrap_or_else(|_| panic!("{tool} stopped reading"));
        if let Some(frames) = line
            .split_whitespace()
            .next()
            .and_then(|word| word.parse::<f64>().ok())
            && line.contains("frames")
        {
            readings.push(frames);
        }
    }
    readings.split_off(3)
}

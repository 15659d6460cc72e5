//! The process's one stdout, and quiet writes to stderr.
//!
//! Every command writes through [`Stdout`], which shares one buffer for the whole process:
//!
//! - on a terminal it is line-buffered, so a person sees each line as it is made;
//! - into a pipe or a file it is block-buffered (64 KiB), so 10,000 records cost a few writes,
//!   and [`finish`] flushes what is left when the program ends;
//! - a *live* handle ([`Stdout::live`], what [`crate::Printer::stdout`] uses) also flushes at
//!   the end of every record, so a reader of a long run's NDJSON sees each event as it happens;
//!   a *batch* handle ([`Stdout::batch`]) leaves that to the buffer.
//!
//! A closed stdout (EPIPE: `loopscope … | head -1`) is the reader's choice, not an error: from
//! then on writes are dropped quietly and report `Ok`, the hook set with [`on_closed`] runs once
//! (the binary uses it to end a long run as Ctrl-C would), and the program exits with the code
//! its run earns, as coreutils do. Any other write error (`> /dev/full`) is returned to the
//! writer and again by [`finish`], so it ends the program with exit 2.
//!
//! Rust's `println!` and `eprintln!` panic when the stream is gone; nothing in loopscope uses
//! them. [`stderr_line!`](crate::stderr_line) is the stderr line that never panics.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

/// How much a block-buffered stdout holds before it writes.
const BLOCK: usize = 64 * 1024;

/// The shared buffer and what is known about the stream behind it.
struct Shared<W: Write> {
    sink: W,
    buffer: Vec<u8>,
    line_buffered: bool,
    /// The reader went away: everything from now on is dropped.
    closed: bool,
    /// The first write error other than EPIPE, given back to every later write and to `finish`.
    failed: Option<io::Error>,
    /// Runs once when `closed` is first set.
    on_closed: Option<Box<dyn FnOnce() + Send>>,
}

/// What a writer is told (again) about a failed stdout: the same kind, and a message that says
/// it was stdout, since the caller may be far from knowing that.
fn copy_of(error: &io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("cannot write to stdout: {error}"))
}

impl<W: Write> Shared<W> {
    fn new(sink: W, line_buffered: bool) -> Self {
        Shared {
            sink,
            buffer: Vec::with_capacity(if line_buffered { 1024 } else { BLOCK }),
            line_buffered,
            closed: false,
            failed: None,
            on_closed: None,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        if let Some(error) = &self.failed {
            return Err(copy_of(error));
        }
        self.buffer.extend_from_slice(bytes);
        if self.line_buffered {
            if let Some(last_newline) = bytes.iter().rposition(|&b| b == b'\n') {
                let through = self.buffer.len() - (bytes.len() - last_newline - 1);
                return self.drain(through);
            }
        } else if self.buffer.len() >= BLOCK {
            return self.drain(self.buffer.len());
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        if let Some(error) = &self.failed {
            return Err(copy_of(error));
        }
        self.drain(self.buffer.len())
    }

    /// Writes the first `through` buffered bytes to the sink.
    fn drain(&mut self, through: usize) -> io::Result<()> {
        let result = self
            .sink
            .write_all(&self.buffer[..through])
            .and_then(|()| self.sink.flush());
        match result {
            Ok(()) => {
                self.buffer.drain(..through);
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                self.buffer = Vec::new();
                if let Some(hook) = self.on_closed.take() {
                    hook();
                }
                Ok(())
            }
            Err(error) => {
                self.buffer.clear();
                let copy = copy_of(&error);
                self.failed = Some(error);
                Err(copy)
            }
        }
    }
}

fn shared() -> MutexGuard<'static, Shared<io::Stdout>> {
    static SHARED: OnceLock<Mutex<Shared<io::Stdout>>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let stdout = io::stdout();
            let line_buffered = stdout.is_terminal();
            Mutex::new(Shared::new(stdout, line_buffered))
        })
        .lock()
        // A thread that panicked while printing leaves a buffer that is still usable.
        .unwrap_or_else(PoisonError::into_inner)
}

/// A handle on the process's one stdout. Cheap to make; every handle writes to the same buffer.
#[derive(Debug, Clone, Copy)]
pub struct Stdout {
    live: bool,
}

impl Stdout {
    /// Flushes at every record boundary (`flush`): for runs whose events a reader follows.
    pub fn live() -> Self {
        Stdout { live: true }
    }

    /// Leaves flushing to the buffer and to [`finish`]: for reports printed all at once.
    pub fn batch() -> Self {
        Stdout { live: false }
    }
}

impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        shared().write(bytes)?;
        Ok(bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        shared().write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.live { shared().flush() } else { Ok(()) }
    }
}

/// Flushes stdout at the end of the program. `Ok` when the reader closed it; the write error
/// otherwise (a full disk is an error the user must see).
pub fn finish() -> io::Result<()> {
    shared().flush()
}

/// Whether the reader of stdout has gone away.
pub fn is_closed() -> bool {
    shared().closed
}

/// Runs `hook` once, the first time a write finds stdout closed (or now, if it already is).
/// The hook runs with stdout locked: it must not print.
pub fn on_closed(hook: impl FnOnce() + Send + 'static) {
    let mut shared = shared();
    if shared.closed {
        drop(shared);
        hook();
    } else {
        shared.on_closed = Some(Box::new(hook));
    }
}

/// Writes one line to stderr; never panics, whatever became of stderr. Stdout is flushed first
/// so that, on a terminal or with `2>&1`, the line lands after what was printed before it.
pub fn stderr_line(args: fmt::Arguments<'_>) {
    let _ = shared().flush();
    let mut stderr = io::stderr().lock();
    let _ = stderr.write_fmt(args);
    let _ = stderr.write_all(b"\n");
}

/// Writes one line to the shared stdout and flushes it (a live line). Returns the write error,
/// if any; a closed stdout is not one. Prefer a [`crate::Record`] through the
/// [`crate::Printer`] where the line has a JSON form.
pub fn stdout_line(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut shared = shared();
    let mut line = fmt::format(args);
    line.push('\n');
    shared.write(line.as_bytes())?;
    shared.flush()
}

/// `println!` that never panics: see [`stdout_line`](crate::stdout::stdout_line).
#[macro_export]
macro_rules! stdout_line {
    ($($arg:tt)*) => {
        $crate::stdout::stdout_line(::std::format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics: a closed stderr (`2>&1 | head -1`) drops the line.
#[macro_export]
macro_rules! stderr_line {
    ($($arg:tt)*) => {
        $crate::stdout::stderr_line(::std::format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A sink that records writes, then fails with `error` once `capacity` bytes are taken.
    struct Sink {
        written: Vec<u8>,
        writes: usize,
        capacity: usize,
        error: fn() -> io::Error,
    }

    impl Sink {
        fn new(capacity: usize, error: fn() -> io::Error) -> Sink {
            Sink {
                written: Vec::new(),
                writes: 0,
                capacity,
                error,
            }
        }
    }

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if self.written.len() + bytes.len() > self.capacity {
                return Err((self.error)());
            }
            self.writes += 1;
            self.written.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn epipe() -> io::Error {
        io::Error::from_raw_os_error(32)
    }

    fn enospc() -> io::Error {
        io::Error::from_raw_os_error(28)
    }

    #[test]
    fn a_terminal_sees_each_complete_line() {
        let mut shared = Shared::new(Sink::new(usize::MAX, epipe), true);
        shared.write(b"one\ntw").unwrap();
        assert_eq!(shared.sink.written, b"one\n");
        shared.write(b"o\n").unwrap();
        assert_eq!(shared.sink.written, b"one\ntwo\n");
    }

    #[test]
    fn a_pipe_gets_whole_blocks_and_the_rest_at_the_end() {
        let mut shared = Shared::new(Sink::new(usize::MAX, epipe), false);
        let line = [b'x'; 99];
        for _ in 0..1000 {
            shared.write(&line).unwrap();
            shared.write(b"\n").unwrap();
        }
        // 100,000 bytes: one block written, the rest held until the end.
        assert_eq!(shared.sink.writes, 1);
        shared.flush().unwrap();
        assert_eq!(shared.sink.written.len(), 100_000);
        assert_eq!(shared.sink.writes, 2);
    }

    #[test]
    fn a_closed_pipe_is_quiet_and_runs_the_hook_once() {
        let mut shared = Shared::new(Sink::new(4, epipe), true);
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        shared.on_closed = Some(Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        shared.write(b"abc\n").unwrap();
        shared.write(b"more than fits\n").unwrap();
        shared.write(b"and more\n").unwrap();
        shared.flush().unwrap();
        assert!(shared.closed);
        assert_eq!(shared.sink.written, b"abc\n");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_full_disk_is_an_error_every_time_it_is_asked() {
        let mut shared = Shared::new(Sink::new(0, enospc), false);
        shared.write(b"held in the buffer\n").unwrap();
        let full = enospc().kind();
        let error = shared.flush().unwrap_err();
        assert_eq!(error.kind(), full);
        assert!(
            error.to_string().starts_with("cannot write to stdout: "),
            "{error}"
        );
        assert_eq!(shared.write(b"x").unwrap_err().kind(), full);
        assert_eq!(shared.flush().unwrap_err().kind(), full);
        assert!(!shared.closed);
    }
}

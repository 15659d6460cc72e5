//! `pty:` — a pseudo-terminal pair whose far side is a built-in loopback plug: a thread echoes
//! everything that arrives on the master back into it. The near side (the slave, `/dev/pts/N`)
//! is configured with the serial options (`baud`, `data`, `parity`, `stop`, `flow`) exactly as a
//! serial port is, so serial tests run without hardware. A pty has no modem lines or line
//! counters; those options are refused here.
//!
//! The plug behaves as the wire would:
//! - it **paces** characters at the baud rate, each taking start + data + parity + stop bits
//!   of line time (10 bits for 8N1), so seconds, throughput and latency over a `pty:` mean what
//!   they would over a cable; `pace=0` turns pacing off for raw speed;
//! - it carries only the **data bits**: on a 5, 6 or 7-bit line the bits above are lost, and
//!   the byte read back has them clear, as a UART set to CS7 delivers it.
//!
//! Linux's pty driver forces 8 data bits without parity on every TCSETS (`pty_set_termios`),
//! so the device holds 8N and the plug emulates the narrower character and the parity bit's
//! line time; everything else (baud, stop bits, flow control) is set on the device and read
//! back from it.
//!
//! `loopscope reflect pty:` creates a pair and serves the plug in a process of its own; a client
//! opens the printed `serial:/dev/pts/N` (and sees the link vanish when the reflector ends). That
//! plug paces at whatever speed the client sets on the device.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};

use crate::endpoint::{Endpoint, EndpointError};
use crate::link::{Link, LinkError, LinkReceiver, LinkSender, is_timeout};
use crate::stats::LineStats;
use crate::transport::serial::{self, HARDWARE_OPTIONS, Parity, SERIAL_OPTIONS, SerialSettings};
use loopscope_sys::{tty_fd, tty_into_fd};

/// `pty:`: a pseudo-terminal whose master end is a loopback plug, paced as a wire.
pub struct PtyLink {
    original: String,
    settings: SerialSettings,
    pace: bool,
}

/// The serial options a pty takes, plus `pace`.
fn pty_settings(endpoint: &Endpoint) -> Result<(SerialSettings, bool), EndpointError> {
    let mut known: Vec<&str> = SERIAL_OPTIONS
        .iter()
        .copied()
        .filter(|o| !HARDWARE_OPTIONS.contains(o))
        .collect();
    known.push("pace");
    endpoint.reject_unknown_options(&known)?;
    if !endpoint.target.is_empty() {
        return Err(endpoint.invalid(
            "pty: makes its own pseudo-terminal (write 'pty:' or 'pty:?baud=...'); for an existing one use serial:/dev/pts/N",
        ));
    }
    let pace = match endpoint.option("pace") {
        None | Some("1" | "yes" | "true" | "on" | "") => true,
        Some("0" | "no" | "false" | "off") => false,
        Some(other) => return Err(endpoint.bad_value("pace", other, "expected 0 or 1")),
    };
    let mut settings = SerialSettings::from_endpoint(endpoint)?;
    // The pair is private to this process; nobody else can race for it.
    settings.exclusive = false;
    Ok((settings, pace))
}

/// On a 7-bit line the kernel's input processing keeps 7 bits of each byte (ISTRIP), as a
/// UART set to CS7 delivers them; the plug clears the bit too, for 5 and 6 bits as well.
fn strip_input_to_seven_bits(slave: &TTYPort, name: &str) -> Result<(), LinkError> {
    use rustix::termios::{InputModes, OptionalActions, tcgetattr, tcsetattr};
    let fd = tty_fd(slave);
    let fail = |e: rustix::io::Errno| LinkError::io(format!("{name}: cannot set ISTRIP"), e.into());
    let mut termios = tcgetattr(fd).map_err(fail)?;
    termios.input_modes |= InputModes::ISTRIP;
    tcsetattr(fd, OptionalActions::Now, &termios).map_err(fail)
}

/// What the pty driver keeps of the settings: 8 data bits, no parity (the plug emulates the
/// line the user asked for).
fn driver_settings(settings: &SerialSettings) -> SerialSettings {
    SerialSettings {
        data_bits: 8,
        parity: Parity::None,
        ..settings.clone()
    }
}

impl PtyLink {
    /// Reads the serial options the plug emulates.
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        let (settings, pace) = pty_settings(endpoint)?;
        Ok(PtyLink {
            original: endpoint.original.clone(),
            settings,
            pace,
        })
    }
}

fn open_pair(original: &str) -> Result<(TTYPort, TTYPort, String), LinkError> {
    let (master, slave) = TTYPort::pair().map_err(|e| {
        LinkError::io(
            format!("{original}: cannot create a pseudo-terminal"),
            io::Error::other(e.description),
        )
    })?;
    let path = slave.name().unwrap_or_default();
    Ok((master, slave, path))
}

impl Link for PtyLink {
    fn describe(&self) -> String {
        self.original.clone()
    }

    fn data_bits(&self) -> u8 {
        self.settings.data_bits
    }

    fn line_rate_bps(&self) -> Option<f64> {
        self.pace.then(|| self.settings.data_rate_bps())
    }

    fn split(self: Box<Self>) -> Result<(Box<dyn LinkSender>, Box<dyn LinkReceiver>), LinkError> {
        let (master, mut slave, path) = open_pair(&self.original)?;
        serial::configure(&mut slave, &driver_settings(&self.settings), &self.original)?;
        if self.settings.data_bits == 7 {
            strip_input_to_seven_bits(&slave, &self.original)?;
        }
        let mut plug = Plug {
            master: tty_into_fd(master),
            line: PlugLine::of(&self.settings, self.pace),
            speed: Speed::Fixed(self.settings.baud),
        };
        std::thread::Builder::new()
            .name("pty loopback plug".into())
            .spawn(move || {
                let never = AtomicBool::new(false);
                let _ = plug.run(&never, &mut |_| {}, OnHangUp::End);
            })
            .map_err(|e| LinkError::io("cannot start the pty loopback thread", e))?;
        let fixed = LineStats {
            device: path,
            ..Default::default()
        };
        let (tx, rx) = serial::tty_halves(
            slave,
            self.settings,
            Some(self.pace),
            "pty",
            fixed,
            &self.original,
        )?;
        Ok((Box::new(tx), Box::new(rx)))
    }
}

/// How the plug carries characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlugLine {
    /// Deliver characters at the baud rate (false: as fast as they come).
    pub pace: bool,
    /// Line time of one character in bits: start + data + parity + stop.
    pub bits_per_char: u32,
    /// The data bits a character keeps (0x7f on a 7-bit line).
    pub data_mask: u8,
}

impl PlugLine {
    /// The plug's line for `settings`.
    pub fn of(settings: &SerialSettings, pace: bool) -> Self {
        PlugLine {
            pace,
            bits_per_char: settings.bits_per_char(),
            data_mask: (0xffu16 >> (8 - settings.data_bits.min(8))) as u8,
        }
    }
}

/// Where the plug takes the baud rate from.
pub enum Speed {
    /// This many baud.
    Fixed(u32),
    /// The speed a client sets on the slave, read back every [`SPEED_RECHECK`].
    FollowDevice(OwnedFd),
}

const SPEED_RECHECK: Duration = Duration::from_millis(100);
/// Characters read ahead of the wire at most; the rest waits in the kernel's buffer.
const PLUG_BACKLOG: usize = 4096;
/// Shortest wait between deliveries: characters go out in batches of about this much line time.
const PLUG_TICK: Duration = Duration::from_millis(1);

/// What the plug does when no slave descriptor is open (EIO on the master).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnHangUp {
    /// The link's own plug: the link is gone, end.
    End,
    /// The reflector's plug: a new client may open the device; keep serving.
    Wait,
}

/// The far end of the cable: reads what the slave sent and writes it back, as the wire would.
pub struct Plug {
    /// The pseudo-terminal's master.
    pub master: OwnedFd,
    /// How it carries characters.
    pub line: PlugLine,
    /// Where the baud rate comes from.
    pub speed: Speed,
}

impl Plug {
    /// Echoes until `stop` is set (or the slave side hangs up, per `on_hang_up`); calls
    /// `echoed` with each batch's size.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        echoed: &mut dyn FnMut(usize),
        on_hang_up: OnHangUp,
    ) -> io::Result<()> {
        let master = self.master.as_fd();
        let mut buffer = vec![0u8; 16 * 1024];
        let mut pending: Vec<u8> = Vec::with_capacity(PLUG_BACKLOG);
        let mut baud = self.current_baud(0);
        let mut baud_checked = Instant::now();
        // When the wire finishes the characters already delivered.
        let mut line_free = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now.duration_since(baud_checked) >= SPEED_RECHECK {
                baud = self.current_baud(baud);
                baud_checked = now;
            }
            let char_time = Duration::from_secs_f64(
                f64::from(self.line.bits_per_char) / f64::from(baud.max(1)),
            );
            // Wait for data, or until the next batch of waiting characters is due.
            let wait = if pending.is_empty() {
                Duration::from_millis(200)
            } else if self.line.pace {
                (line_free + char_time)
                    .saturating_duration_since(now)
                    .max(PLUG_TICK)
            } else {
                Duration::ZERO
            };
            if pending.len() < PLUG_BACKLOG {
                let room = (PLUG_BACKLOG - pending.len()).min(buffer.len());
                match loopscope_sys::read_timeout(master, &mut buffer[..room], Some(wait)) {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        if pending.is_empty() {
                            // The wire was idle: these characters start now.
                            line_free = line_free.max(Instant::now());
                        }
                        pending.extend(buffer[..n].iter().map(|b| b & self.line.data_mask));
                    }
                    // A signal (the EINTR rule) or a readable-then-empty master: go round again.
                    Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => match on_hang_up {
                        OnHangUp::End => return Ok(()),
                        OnHangUp::Wait => {
                            pending.clear();
                            std::thread::sleep(Duration::from_millis(200));
                            continue;
                        }
                    },
                    Err(e) => return Err(e),
                }
            } else {
                std::thread::sleep(wait);
            }
            if pending.is_empty() {
                continue;
            }
            let due = if self.line.pace {
                let elapsed = Instant::now().saturating_duration_since(line_free);
                let due = (elapsed.as_secs_f64() / char_time.as_secs_f64()) as usize;
                due.min(pending.len())
            } else {
                pending.len()
            };
            if due == 0 {
                continue;
            }
            match loopscope_sys::write_all(master, &pending[..due]) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EIO) && on_hang_up == OnHangUp::Wait => {
                    pending.clear();
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(()),
                Err(e) => return Err(e),
            }
            if self.line.pace {
                line_free += char_time * due as u32;
            }
            pending.drain(..due);
            echoed(due);
        }
        Ok(())
    }

    fn current_baud(&self, last: u32) -> u32 {
        match &self.speed {
            Speed::Fixed(baud) => *baud,
            Speed::FollowDevice(slave) => rustix::termios::tcgetattr(slave.as_fd())
                .map(|t| t.output_speed())
                .ok()
                .filter(|&b| b > 0)
                .unwrap_or(last.max(1)),
        }
    }
}

/// For `loopscope reflect pty:`: a pair whose master the reflector serves with a [`Plug`] that
/// follows the speed set on the device. Returns the slave's path and the plug; the plug holds a
/// slave descriptor so the pair outlives the clients that come and go.
pub fn open_far_end(endpoint: &Endpoint) -> Result<(String, Plug), LinkError> {
    let (settings, pace) = pty_settings(endpoint)?;
    let (master, mut slave, path) = open_pair(&endpoint.original)?;
    serial::configure(&mut slave, &driver_settings(&settings), &endpoint.original)?;
    if settings.data_bits == 7 {
        strip_input_to_seven_bits(&slave, &endpoint.original)?;
    }
    Ok((
        path,
        Plug {
            master: tty_into_fd(master),
            line: PlugLine::of(&settings, pace),
            speed: Speed::FollowDevice(tty_into_fd(slave)),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plug_line_of_the_usual_settings() {
        let endpoint = Endpoint::parse("pty:?baud=9600&data=7&parity=even&stop=2").unwrap();
        let (settings, pace) = pty_settings(&endpoint).unwrap();
        assert!(pace);
        let line = PlugLine::of(&settings, pace);
        assert_eq!(line.bits_per_char, 11);
        assert_eq!(line.data_mask, 0x7f);
        let endpoint = Endpoint::parse("pty:?data=5&pace=0").unwrap();
        let (settings, pace) = pty_settings(&endpoint).unwrap();
        assert_eq!(PlugLine::of(&settings, pace).data_mask, 0x1f);
        assert!(!pace);
        assert!(pty_settings(&Endpoint::parse("pty:?pace=2").unwrap()).is_err());
    }
}

//! `serial:/dev/ttyX?baud=…&data=5..8&parity=none|odd|even|mark|space&stop=1|2&flow=none|rtscts|xonxoff`
//!
//! The serialport crate opens the port (exclusive: TIOCEXCL and flock), sets raw mode, data bits,
//! parity, stop bits, flow control and any baud rate (termios2 with BOTHER on Linux). What it
//! lacks is done here with ioctls: mark/space parity (CMSPAR), the UART's internal loopback
//! (TIOCM_LOOP, `internal=1`), RS-485 (TIOCSRS485), the kernel's line counters (TIOCGICOUNT), and
//! the control-line loop test (`lines=1`: RTS→CTS, DTR→DSR and DTR→DCD as a full loopback plug
//! wires them).
//!
//! The receiver measures the effective baud rate from the data and warns when it is more than
//! 1% off the configured rate (a wrong crystal, a USB adapter that rounds the divisor).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use serialport::{DataBits, FlowControl, SerialPort, StopBits, TTYPort};

use crate::endpoint::{Endpoint, EndpointError};
use crate::link::{Cancel, Link, LinkError, LinkReceiver, LinkSender, LinkStats, SendError};
use crate::stats::{LineCounterDeltas, LineStats};
use crate::transport::send::{Writer, write_all_until};
use loopscope_sys::{LineCounters, tty_fd};
use rustix::termios::{ControlModes, InputModes, OptionalActions, Termios};

/// Options a serial port takes.
pub const SERIAL_OPTIONS: &[&str] = &[
    "baud",
    "data",
    "parity",
    "stop",
    "flow",
    "internal",
    "rs485",
    "rs485_rts_on_send",
    "rs485_rts_after_send",
    "rs485_delay_before_ms",
    "rs485_delay_after_ms",
    "rs485_rx_during_tx",
    "exclusive",
    "lines",
];

/// Options that only make sense on real hardware (not on `pty:`).
pub const HARDWARE_OPTIONS: &[&str] = &[
    "internal",
    "rs485",
    "rs485_rts_on_send",
    "rs485_rts_after_send",
    "rs485_delay_before_ms",
    "rs485_delay_after_ms",
    "rs485_rx_during_tx",
    "lines",
];

/// The parity bit of each character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    /// No parity bit.
    None,
    /// Odd parity.
    Odd,
    /// Even parity.
    Even,
    /// Parity bit always 1 (CMSPAR with PARODD).
    Mark,
    /// Parity bit always 0 (CMSPAR without PARODD).
    Space,
}

/// RS-485 settings (TIOCSRS485): how the driver turns the transmitter on and off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rs485 {
    /// RTS on while sending.
    pub rts_on_send: bool,
    /// RTS on after sending.
    pub rts_after_send: bool,
    /// Delay before sending, in milliseconds.
    pub delay_before_ms: u32,
    /// Delay after sending, in milliseconds.
    pub delay_after_ms: u32,
    /// Receive while transmitting (hear the own echo).
    pub rx_during_tx: bool,
}

/// A serial port's settings, from the endpoint's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialSettings {
    /// Bits per second.
    pub baud: u32,
    /// Data bits per character, 5 to 8.
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits, 1 or 2.
    pub stop_bits: u8,
    /// Flow control.
    pub flow: FlowControl,
    /// The UART's internal loopback (TIOCM_LOOP): no plug needed.
    pub internal_loopback: bool,
    /// RS-485 mode, when asked for.
    pub rs485: Option<Rs485>,
    /// Open the port exclusively (TIOCEXCL), so nobody else reads our bytes.
    pub exclusive: bool,
    /// Test the control lines through the plug (RTS-CTS, DTR-DSR, DTR-DCD).
    pub line_test: bool,
}

impl SerialSettings {
    /// Reads and checks the serial options.
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        let flag = |key: &str| -> Result<Option<bool>, EndpointError> {
            match endpoint.option(key) {
                None => Ok(None),
                Some("1" | "yes" | "true" | "on" | "") => Ok(Some(true)),
                Some("0" | "no" | "false" | "off") => Ok(Some(false)),
                Some(other) => Err(endpoint.bad_value(key, other, "expected 0 or 1")),
            }
        };
        let baud = endpoint.parsed_option::<u32>("baud")?.unwrap_or(115_200);
        if baud == 0 {
            return Err(endpoint.bad_value("baud", "0", "must be a positive rate in bit/s"));
        }
        let data_bits = endpoint.parsed_option::<u8>("data")?.unwrap_or(8);
        if !(5..=8).contains(&data_bits) {
            return Err(endpoint.bad_value(
                "data",
                &data_bits.to_string(),
                "expected 5, 6, 7 or 8",
            ));
        }
        let parity = match endpoint.option("parity").unwrap_or("none") {
            "none" | "n" => Parity::None,
            "odd" | "o" => Parity::Odd,
            "even" | "e" => Parity::Even,
            "mark" | "m" => Parity::Mark,
            "space" | "s" => Parity::Space,
            other => {
                return Err(endpoint.bad_value(
                    "parity",
                    other,
                    "expected none, odd, even, mark or space",
                ));
            }
        };
        let stop_bits = endpoint.parsed_option::<u8>("stop")?.unwrap_or(1);
        if !(1..=2).contains(&stop_bits) {
            return Err(endpoint.bad_value("stop", &stop_bits.to_string(), "expected 1 or 2"));
        }
        let flow = match endpoint.option("flow").unwrap_or("none") {
            "none" => FlowControl::None,
            "rtscts" | "hardware" => FlowControl::Hardware,
            "xonxoff" | "software" => FlowControl::Software,
            other => {
                return Err(endpoint.bad_value("flow", other, "expected none, rtscts or xonxoff"));
            }
        };
        let rs485 = if flag("rs485")?.unwrap_or(false) {
            Some(Rs485 {
                rts_on_send: flag("rs485_rts_on_send")?.unwrap_or(true),
                rts_after_send: flag("rs485_rts_after_send")?.unwrap_or(false),
                delay_before_ms: endpoint
                    .parsed_option("rs485_delay_before_ms")?
                    .unwrap_or(0),
                delay_after_ms: endpoint.parsed_option("rs485_delay_after_ms")?.unwrap_or(0),
                rx_during_tx: flag("rs485_rx_during_tx")?.unwrap_or(false),
            })
        } else {
            None
        };
        Ok(SerialSettings {
            baud,
            data_bits,
            parity,
            stop_bits,
            flow,
            internal_loopback: flag("internal")?.unwrap_or(false),
            rs485,
            exclusive: flag("exclusive")?.unwrap_or(true),
            line_test: flag("lines")?.unwrap_or(false),
        })
    }

    /// Bits on the wire per character: start + data + parity + stop.
    pub fn bits_per_char(&self) -> u32 {
        1 + self.data_bits as u32 + u32::from(self.parity != Parity::None) + self.stop_bits as u32
    }

    /// Data bits per second the line carries at its baud rate (the start, parity and stop bits
    /// of each character are overhead).
    pub fn data_rate_bps(&self) -> f64 {
        f64::from(self.baud) * f64::from(self.data_bits) / f64::from(self.bits_per_char())
    }

    /// What the user asked for, in the usual shorthand (`115200 8N1`).
    pub fn describe(&self) -> String {
        let parity = match self.parity {
            Parity::None => 'N',
            Parity::Odd => 'O',
            Parity::Even => 'E',
            Parity::Mark => 'M',
            Parity::Space => 'S',
        };
        format!(
            "{} {}{}{}",
            self.baud, self.data_bits, parity, self.stop_bits
        )
    }
}

fn serial_error(what: String, e: serialport::Error) -> LinkError {
    let kind = match e.kind() {
        serialport::ErrorKind::Io(kind) => kind,
        serialport::ErrorKind::NoDevice => io::ErrorKind::NotFound,
        _ => io::ErrorKind::Other,
    };
    LinkError::io(what, io::Error::new(kind, e.description))
}

/// termios read straight from the device (TCGETS2, with the exact baud rate), as the kernel
/// holds it.
pub fn read_termios(fd: impl AsFd) -> io::Result<Termios> {
    rustix::termios::tcgetattr(fd).map_err(io::Error::from)
}

fn write_termios(fd: impl AsFd, t: &Termios) -> io::Result<()> {
    rustix::termios::tcsetattr(fd, OptionalActions::Now, t).map_err(io::Error::from)
}

/// Applies the settings to an open port and checks the device took them.
pub fn configure(
    port: &mut TTYPort,
    settings: &SerialSettings,
    name: &str,
) -> Result<(), LinkError> {
    let fail = |what: &str, e: serialport::Error| serial_error(format!("{name}: {what}"), e);
    let data_bits = match settings.data_bits {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        _ => DataBits::Eight,
    };
    port.set_data_bits(data_bits)
        .map_err(|e| fail("cannot set data bits", e))?;
    port.set_stop_bits(if settings.stop_bits == 2 {
        StopBits::Two
    } else {
        StopBits::One
    })
    .map_err(|e| fail("cannot set stop bits", e))?;
    port.set_flow_control(settings.flow)
        .map_err(|e| fail("cannot set flow control", e))?;
    port.set_parity(match settings.parity {
        Parity::Odd => serialport::Parity::Odd,
        Parity::Even => serialport::Parity::Even,
        _ => serialport::Parity::None,
    })
    .map_err(|e| fail("cannot set parity", e))?;
    port.set_baud_rate(settings.baud)
        .map_err(|e| fail(&format!("the driver refused {} baud", settings.baud), e))?;
    let fd = tty_fd(port);
    let io_fail = |what: String, e: io::Error| LinkError::io(format!("{name}: {what}"), e);
    if matches!(settings.parity, Parity::Mark | Parity::Space) {
        let mut t = read_termios(fd).map_err(|e| io_fail("cannot read termios".into(), e))?;
        t.control_modes |= ControlModes::PARENB | ControlModes::CMSPAR;
        t.control_modes
            .set(ControlModes::PARODD, settings.parity == Parity::Mark);
        write_termios(fd, &t).map_err(|e| io_fail("cannot set mark/space parity".into(), e))?;
        let back = read_termios(fd).map_err(|e| io_fail("cannot read termios".into(), e))?;
        if !back.control_modes.contains(ControlModes::CMSPAR) {
            return Err(LinkError::Unsupported(
                format!(
                    "{name}: the driver does not support {:?} parity (CMSPAR was not kept)",
                    settings.parity
                )
                .to_lowercase(),
            ));
        }
    }
    let back = read_termios(fd).map_err(|e| io_fail("cannot read termios".into(), e))?;
    verify(&back, settings).map_err(|why| {
        LinkError::Unsupported(format!(
            "{name}: the driver did not keep the settings: {why}"
        ))
    })?;
    if settings.internal_loopback {
        set_internal_loopback(fd).map_err(|e| {
            LinkError::Unsupported(format!(
                "{name}: the driver refused internal loopback (TIOCM_LOOP): {e}; use a loopback plug instead"
            ))
        })?;
    }
    if let Some(rs485) = settings.rs485 {
        set_rs485(fd, &rs485).map_err(|e| {
            LinkError::Unsupported(format!(
                "{name}: the driver refused RS-485 mode (TIOCSRS485): {e}"
            ))
        })?;
    }
    Ok(())
}

/// Compares what the device holds with what was asked for; says what differs.
pub fn verify(t: &Termios, settings: &SerialSettings) -> Result<(), String> {
    let mut wrong = Vec::new();
    let cflag = t.control_modes;
    let size = match cflag & ControlModes::CSIZE {
        size if size == ControlModes::CS5 => 5,
        size if size == ControlModes::CS6 => 6,
        size if size == ControlModes::CS7 => 7,
        _ => 8,
    };
    if size != settings.data_bits {
        wrong.push(format!(
            "{} data bits asked, {size} set",
            settings.data_bits
        ));
    }
    let parity = if !cflag.contains(ControlModes::PARENB) {
        Parity::None
    } else {
        match (
            cflag.contains(ControlModes::CMSPAR),
            cflag.contains(ControlModes::PARODD),
        ) {
            (true, true) => Parity::Mark,
            (true, false) => Parity::Space,
            (false, true) => Parity::Odd,
            (false, false) => Parity::Even,
        }
    };
    if parity != settings.parity {
        wrong.push(format!(
            "{} parity asked, {} set",
            format!("{:?}", settings.parity).to_lowercase(),
            format!("{parity:?}").to_lowercase()
        ));
    }
    let stop = if cflag.contains(ControlModes::CSTOPB) {
        2
    } else {
        1
    };
    if stop != settings.stop_bits {
        wrong.push(format!(
            "{} stop bits asked, {stop} set",
            settings.stop_bits
        ));
    }
    let rtscts = cflag.contains(ControlModes::CRTSCTS);
    if rtscts != (settings.flow == FlowControl::Hardware) {
        wrong.push("RTS/CTS flow control not as asked".into());
    }
    let xonxoff = t.input_modes.contains(InputModes::IXON | InputModes::IXOFF);
    if xonxoff != (settings.flow == FlowControl::Software) {
        wrong.push("XON/XOFF flow control not as asked".into());
    }
    if t.output_speed() != settings.baud {
        wrong.push(format!(
            "{} baud asked, {} set (try a standard rate)",
            settings.baud,
            t.output_speed()
        ));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

fn set_internal_loopback(fd: impl AsFd) -> io::Result<()> {
    let fd = fd.as_fd();
    loopscope_sys::set_modem_bits(fd, loopscope_sys::TIOCM_LOOP)?;
    if loopscope_sys::modem_bits(fd)? & loopscope_sys::TIOCM_LOOP == 0 {
        return Err(io::Error::other("the loop bit did not stay set"));
    }
    Ok(())
}

fn set_rs485(fd: impl AsFd, rs485: &Rs485) -> io::Result<()> {
    loopscope_sys::set_rs485(
        fd,
        &loopscope_sys::Rs485Config {
            rts_on_send: rs485.rts_on_send,
            rts_after_send: rs485.rts_after_send,
            rx_during_tx: rs485.rx_during_tx,
            delay_before_ms: rs485.delay_before_ms,
            delay_after_ms: rs485.delay_after_ms,
        },
    )
}

/// The kernel's line counters (TIOCGICOUNT); `None` when the driver has none (ptys, many USB).
pub fn line_counters(fd: impl AsFd) -> Option<LineCounters> {
    loopscope_sys::line_counters(fd).ok()
}

/// The control-line loop test: each output toggled, the inputs a full loopback plug wires to
/// it must follow. Values: "ok", "stuck high", "stuck low", or why it could not run.
pub fn control_line_test(port: &mut TTYPort) -> BTreeMap<String, String> {
    let mut result = BTreeMap::new();
    let settle = || std::thread::sleep(Duration::from_millis(20));
    type Read = fn(&mut TTYPort) -> serialport::Result<bool>;
    let pairs: [(&str, bool, Read); 3] = [
        ("rts_cts", true, |p| p.read_clear_to_send()),
        ("dtr_dsr", false, |p| p.read_data_set_ready()),
        ("dtr_dcd", false, |p| p.read_carrier_detect()),
    ];
    for (name, rts, read) in pairs {
        let drive = |port: &mut TTYPort, level: bool| {
            if rts {
                port.write_request_to_send(level)
            } else {
                port.write_data_terminal_ready(level)
            }
        };
        let outcome = (|| {
            drive(port, false)?;
            settle();
            let low = read(port)?;
            drive(port, true)?;
            settle();
            let high = read(port)?;
            Ok::<_, serialport::Error>(match (low, high) {
                (false, true) => "ok".to_string(),
                (true, true) => "stuck high".to_string(),
                (false, false) => "stuck low (not wired?)".to_string(),
                (true, false) => "inverted".to_string(),
            })
        })();
        let value = outcome.unwrap_or_else(|e| format!("unsupported: {}", e.description));
        result.insert(name.into(), value);
    }
    result
}

/// Sender and receiver over one tty descriptor (the receiver holds a clone).
pub struct TtySender {
    port: TTYPort,
}

impl LinkSender for TtySender {
    fn send(&mut self, data: &[u8], cancel: &Cancel) -> Result<(), SendError> {
        write_all_until(tty_fd(&self.port), data, Writer::NonBlocking, cancel)
    }

    // No tcdrain(3): a test reads every byte back anyway, and a line held off by flow control
    // (CTS never raised) would keep tcdrain waiting forever.
}

/// The receiving half of a serial port or a pty slave.
pub struct TtyReceiver {
    port: TTYPort,
    timeout: Option<Duration>,
    settings: SerialSettings,
    /// Whether the far end paces (`Some` on a pty with the built-in plug; a UART always does).
    paced: Option<bool>,
    first: Option<Instant>,
    last: Option<Instant>,
    /// Bytes received after the first read (the first read's bytes had no measured duration).
    timed_bytes: u64,
    bytes: u64,
    counters_at_open: Option<LineCounters>,
    fixed: LineStats,
    transport: &'static str,
}

impl TtyReceiver {
    fn measured_baud(&self) -> Option<f64> {
        let (first, last) = (self.first?, self.last?);
        let span = last.duration_since(first).as_secs_f64();
        // Under a tenth of a second the read granularity dominates.
        (span >= 0.1 && self.timed_bytes > 0)
            .then(|| self.timed_bytes as f64 * self.settings.bits_per_char() as f64 / span)
    }
}

impl LinkReceiver for TtyReceiver {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = match loopscope_sys::read_timeout(tty_fd(&self.port), buf, self.timeout) {
            // The other end of a pseudo-terminal closed, or a USB adapter was unplugged.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the serial device went away (EIO)",
                ));
            }
            other => other?,
        };
        let now = Instant::now();
        if self.first.is_none() {
            self.first = Some(now);
        } else {
            self.timed_bytes += n as u64;
        }
        self.last = Some(now);
        self.bytes += n as u64;
        Ok(n)
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeout = timeout;
        Ok(())
    }

    fn stats(&self) -> LinkStats {
        let mut line = self.fixed.clone();
        line.baud_configured = self.settings.baud;
        line.paced = self.paced;
        line.baud_measured = self.measured_baud().map(f64::round);
        // An unpaced plug runs as fast as the kernel copies: nothing to warn about.
        if self.paced != Some(false)
            && let Some(measured) = line.baud_measured
        {
            line.baud_warning = baud_warning(measured, self.settings.baud);
        }
        if let (Some(start), Some(now)) = (self.counters_at_open, line_counters(tty_fd(&self.port)))
        {
            let delta = |a: i32, b: i32| i64::from(a) - i64::from(b);
            line.counters = Some(LineCounterDeltas {
                line_rx: delta(now.rx, start.rx),
                line_tx: delta(now.tx, start.tx),
                line_frame_errors: delta(now.frame, start.frame),
                line_overruns: delta(now.overrun, start.overrun),
                line_parity_errors: delta(now.parity, start.parity),
                line_breaks: delta(now.brk, start.brk),
                line_buffer_overruns: delta(now.buf_overrun, start.buf_overrun),
            });
        }
        LinkStats {
            transport: Some(self.transport),
            line: Some(line),
            ..Default::default()
        }
    }
}

/// A warning when the rate measured from the data is more than 1% off the configured one.
pub fn baud_warning(measured: f64, configured: u32) -> Option<String> {
    let off = measured / configured as f64 - 1.0;
    (off.abs() > 0.01).then(|| {
        format!(
            "measured {measured:.0} baud is {:+.1}% off the configured {configured}",
            off * 100.0
        )
    })
}

/// Splits a configured tty into link halves. `paced`: whether the far end paces (see
/// [`LineStats::paced`]); `fixed`: what is known at open (device, control-line verdicts).
pub fn tty_halves(
    port: TTYPort,
    settings: SerialSettings,
    paced: Option<bool>,
    transport: &'static str,
    mut fixed: LineStats,
    name: &str,
) -> Result<(TtySender, TtyReceiver), LinkError> {
    let reader = port
        .try_clone_native()
        .map_err(|e| serial_error(format!("{name}: cannot clone descriptor"), e))?;
    // Shared by both halves (one open file): the sender waits for room in poll(2), where it
    // sees its deadline; the receiver already waits in poll(2) before each read.
    rustix::io::ioctl_fionbio(tty_fd(&port), true).map_err(|e| {
        LinkError::io(
            format!("{name}: cannot make the port non-blocking"),
            e.into(),
        )
    })?;
    let counters_at_open = line_counters(tty_fd(&port));
    fixed.line_settings = settings.describe();
    if counters_at_open.is_none() {
        fixed.line_counters = Some("not supported by the driver".into());
    }
    Ok((
        TtySender { port },
        TtyReceiver {
            port: reader,
            timeout: None,
            settings,
            paced,
            first: None,
            last: None,
            timed_bytes: 0,
            bytes: 0,
            counters_at_open,
            fixed,
            transport,
        },
    ))
}

/// `serial:DEVICE`: a serial port, with a loopback plug or a far end that echoes.
pub struct SerialLink {
    original: String,
    path: String,
    settings: SerialSettings,
}

impl SerialLink {
    /// Reads the device path and the serial options.
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        endpoint.reject_unknown_options(SERIAL_OPTIONS)?;
        if endpoint.target.is_empty() {
            return Err(endpoint.invalid("expected serial:/dev/ttyX (a device path)"));
        }
        Ok(SerialLink {
            original: endpoint.original.clone(),
            path: endpoint.target.clone(),
            settings: SerialSettings::from_endpoint(endpoint)?,
        })
    }

    /// Opens and configures the port.
    pub fn open(&self) -> Result<TTYPort, LinkError> {
        let mut port = serialport::new(self.path.as_str(), self.settings.baud)
            .exclusive(self.settings.exclusive)
            .timeout(Duration::from_secs(1))
            .open_native()
            .map_err(|e| {
                serial_error(
                    format!(
                        "{}: cannot open {} (does it exist, is it in use, may you open it?)",
                        self.original, self.path
                    ),
                    e,
                )
            })?;
        configure(&mut port, &self.settings, &self.original)?;
        Ok(port)
    }
}

impl Link for SerialLink {
    fn describe(&self) -> String {
        self.original.clone()
    }

    fn data_bits(&self) -> u8 {
        self.settings.data_bits
    }

    fn line_rate_bps(&self) -> Option<f64> {
        Some(self.settings.data_rate_bps())
    }

    fn split(self: Box<Self>) -> Result<(Box<dyn LinkSender>, Box<dyn LinkReceiver>), LinkError> {
        let mut port = self.open()?;
        let fixed = LineStats {
            device: self.path.clone(),
            control_lines: self
                .settings
                .line_test
                .then(|| control_line_test(&mut port)),
            ..Default::default()
        };
        let (tx, rx) = tty_halves(port, self.settings, None, "serial", fixed, &self.original)?;
        Ok((Box::new(tx), Box::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_settings() {
        let e =
            Endpoint::parse("serial:/dev/ttyS0?baud=250000&data=7&parity=mark&stop=2&flow=rtscts")
                .unwrap();
        let s = SerialSettings::from_endpoint(&e).unwrap();
        assert_eq!(s.baud, 250_000);
        assert_eq!(s.data_bits, 7);
        assert_eq!(s.parity, Parity::Mark);
        assert_eq!(s.stop_bits, 2);
        assert_eq!(s.flow, FlowControl::Hardware);
        assert_eq!(s.bits_per_char(), 11);
        assert_eq!(s.describe(), "250000 7M2");
        for bad in [
            "data=9",
            "parity=weird",
            "stop=3",
            "flow=maybe",
            "baud=0",
            "internal=2",
        ] {
            let e = Endpoint::parse(&format!("serial:/dev/ttyS0?{bad}")).unwrap();
            assert!(SerialSettings::from_endpoint(&e).is_err(), "{bad}");
        }
    }

    #[test]
    fn warns_only_beyond_one_percent() {
        assert_eq!(baud_warning(115_200.0, 115_200), None);
        assert_eq!(baud_warning(115_200.0 * 1.009, 115_200), None);
        let w = baud_warning(115_200.0 * 0.97, 115_200).unwrap();
        assert_eq!(w, "measured 111744 baud is -3.0% off the configured 115200");
        assert!(baud_warning(9600.0 * 1.02, 9600).unwrap().contains("+2.0%"));
    }
}

//! Serial-port ioctls that neither the serialport crate nor rustix's termios offer: the modem
//! control lines (TIOCMBIS/TIOCMGET, for the UART's internal loopback bit), RS-485 mode
//! (TIOCSRS485) and the kernel's line counters (TIOCGICOUNT). Termios itself (TCGETS2/TCSETS2,
//! any baud rate) is `rustix::termios`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};

use serialport::TTYPort;

/// The descriptor of an open serial port, borrowed for as long as the port is (the serialport
/// crate implements `AsRawFd` but not `AsFd`).
pub fn tty_fd(port: &TTYPort) -> BorrowedFd<'_> {
    // SAFETY: a TTYPort owns its descriptor and closes it only on drop; the borrow cannot
    // outlive `port`, so the descriptor stays open for the BorrowedFd's whole lifetime.
    unsafe { BorrowedFd::borrow_raw(port.as_raw_fd()) }
}

/// Takes the descriptor out of a serial port, which no longer closes it.
pub fn tty_into_fd(port: TTYPort) -> OwnedFd {
    // SAFETY: `into_raw_fd` hands over sole ownership of an open descriptor (the port forgets
    // it without closing it), which is what `OwnedFd::from_raw_fd` requires.
    unsafe { OwnedFd::from_raw_fd(port.into_raw_fd()) }
}

/// TIOCM_LOOP: the UART loops its transmitter to its receiver (linux/termios.h).
pub const TIOCM_LOOP: libc::c_int = 0x8000;

/// Sets the given modem-control bits (TIOCMBIS); the others are left alone.
pub fn set_modem_bits(fd: impl AsFd, bits: libc::c_int) -> io::Result<()> {
    let fd = fd.as_fd();
    // SAFETY: TIOCMBIS reads one int through the pointer, which points at `bits` for the call;
    // the descriptor is borrowed, so it stays open across the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCMBIS, &bits) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The modem-control bits as the driver holds them now (TIOCMGET).
pub fn modem_bits(fd: impl AsFd) -> io::Result<libc::c_int> {
    let fd = fd.as_fd();
    let mut bits: libc::c_int = 0;
    // SAFETY: TIOCMGET writes one int through the pointer, which points at `bits`; the
    // descriptor is borrowed for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCMGET, &mut bits) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(bits)
}

/// RS-485 settings (the fields of `struct serial_rs485` in linux/serial.h that loopscope sets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rs485Config {
    /// Drive RTS high while sending (SER_RS485_RTS_ON_SEND).
    pub rts_on_send: bool,
    /// Drive RTS high after sending (SER_RS485_RTS_AFTER_SEND).
    pub rts_after_send: bool,
    /// Keep receiving while sending (SER_RS485_RX_DURING_TX).
    pub rx_during_tx: bool,
    /// Delay before send, in milliseconds.
    pub delay_before_ms: u32,
    /// Delay after send, in milliseconds.
    pub delay_after_ms: u32,
}

/// `struct serial_rs485` from linux/serial.h.
#[repr(C)]
#[derive(Default)]
struct SerialRs485 {
    flags: u32,
    delay_rts_before_send: u32,
    delay_rts_after_send: u32,
    padding: [u32; 5],
}

const SER_RS485_ENABLED: u32 = 1;
const SER_RS485_RTS_ON_SEND: u32 = 1 << 1;
const SER_RS485_RTS_AFTER_SEND: u32 = 1 << 2;
const SER_RS485_RX_DURING_TX: u32 = 1 << 4;

/// Turns RS-485 mode on with the given settings (TIOCSRS485).
pub fn set_rs485(fd: impl AsFd, config: &Rs485Config) -> io::Result<()> {
    let mut raw = SerialRs485 {
        flags: SER_RS485_ENABLED,
        delay_rts_before_send: config.delay_before_ms,
        delay_rts_after_send: config.delay_after_ms,
        ..Default::default()
    };
    if config.rts_on_send {
        raw.flags |= SER_RS485_RTS_ON_SEND;
    }
    if config.rts_after_send {
        raw.flags |= SER_RS485_RTS_AFTER_SEND;
    }
    if config.rx_during_tx {
        raw.flags |= SER_RS485_RX_DURING_TX;
    }
    let fd = fd.as_fd();
    // SAFETY: TIOCSRS485 reads a `struct serial_rs485`, which `SerialRs485` is (repr(C), same
    // fields and size); the pointer is valid for the call and the descriptor borrowed.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSRS485, &raw) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `struct serial_icounter_struct` from linux/serial.h: the driver's counts since it was
/// loaded.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LineCounters {
    /// CTS transitions.
    pub cts: i32,
    /// DSR transitions.
    pub dsr: i32,
    /// Ring indicator transitions.
    pub rng: i32,
    /// DCD transitions.
    pub dcd: i32,
    /// Bytes received.
    pub rx: i32,
    /// Bytes sent.
    pub tx: i32,
    /// Framing errors.
    pub frame: i32,
    /// Hardware FIFO overruns.
    pub overrun: i32,
    /// Parity errors.
    pub parity: i32,
    /// Breaks received.
    pub brk: i32,
    /// Receive buffer overruns (the tty layer dropped bytes).
    pub buf_overrun: i32,
    reserved: [i32; 9],
}

/// The kernel's line counters (TIOCGICOUNT); an error when the driver keeps none (ptys, many
/// USB adapters).
pub fn line_counters(fd: impl AsFd) -> io::Result<LineCounters> {
    let mut counters = LineCounters::default();
    let fd = fd.as_fd();
    // SAFETY: TIOCGICOUNT writes a `struct serial_icounter_struct`, which `LineCounters` is
    // (repr(C), same fields and size); the pointer is valid for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGICOUNT, &mut counters) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(counters)
}

#[cfg(test)]
mod tests {
    use serialport::SerialPort;

    use super::*;

    /// The kernel's struct sizes (linux/serial.h): serial_rs485 is 8 u32s, serial_icounter_struct
    /// 20 ints. A wrong size would let the ioctl read or write past our struct.
    #[test]
    fn structs_have_the_kernel_sizes() {
        assert_eq!(std::mem::size_of::<SerialRs485>(), 32);
        assert_eq!(std::mem::size_of::<LineCounters>(), 80);
    }

    /// The helpers hand over the port's own descriptor: what rustix reads through the borrowed
    /// one is the pty's termios, and the owned one stays open after the port is gone.
    #[test]
    fn a_port_lends_and_gives_its_descriptor() {
        let (master, slave) = TTYPort::pair().expect("pty pair");
        assert!(rustix::termios::tcgetattr(tty_fd(&slave)).is_ok());
        let slave_name = slave.name().expect("name");
        let owned = tty_into_fd(slave);
        assert!(rustix::termios::isatty(&owned));
        assert_eq!(
            rustix::pty::ptsname(tty_fd(&master), Vec::new())
                .expect("ptsname")
                .to_str()
                .expect("utf-8"),
            slave_name
        );
    }

    /// A pty has neither UART loopback nor line counters nor RS-485: each call fails cleanly
    /// (ENOTTY/EINVAL from the driver), never crashes.
    #[test]
    fn a_pty_refuses_the_uart_only_ioctls() {
        let master =
            rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY)
                .expect("openpt");
        assert!(line_counters(&master).is_err());
        assert!(set_rs485(&master, &Rs485Config::default()).is_err());
    }
}

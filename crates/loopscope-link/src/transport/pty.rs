//! `pty:` — a pseudo-terminal pair whose far side is a built-in loopback plug: a thread echoes
//! everything that arrives on the master back into it. The near side (the slave, `/dev/pts/N`)
//! is configured with the serial options (`baud`, `data`, `parity`, `stop`, `flow`) exactly as a
//! serial port is, so serial tests run without hardware. A pty does not pace data at the baud
//! rate and has no modem lines or line counters; those options are refused here. Linux's pty
//! driver also forces 8 data bits without parity, so `data=5..7` and any parity fail with a
//! clear message (the settings are read back from the device, never assumed).
//!
//! `loopscope reflect pty:` creates a pair and serves the plug in a process of its own; a client
//! opens the printed `serial:/dev/pts/N` (and sees the link vanish when the reflector ends).

use std::io;
use std::os::fd::OwnedFd;

use serde_json::{Map, json};
use serialport::TTYPort;

use crate::endpoint::{Endpoint, EndpointError};
use crate::link::{Link, LinkError, LinkReceiver, LinkSender};
use crate::transport::serial::{self, HARDWARE_OPTIONS, SERIAL_OPTIONS, SerialSettings};
use loopscope_sys::tty_into_fd;

pub struct PtyLink {
    original: String,
    settings: SerialSettings,
}

fn pty_settings(endpoint: &Endpoint) -> Result<SerialSettings, EndpointError> {
    let known: Vec<&str> = SERIAL_OPTIONS
        .iter()
        .copied()
        .filter(|o| !HARDWARE_OPTIONS.contains(o))
        .collect();
    endpoint.reject_unknown_options(&known)?;
    if !endpoint.target.is_empty() {
        return Err(endpoint.invalid(
            "pty: makes its own pseudo-terminal (write 'pty:' or 'pty:?baud=...'); for an existing one use serial:/dev/pts/N",
        ));
    }
    let mut settings = SerialSettings::from_endpoint(endpoint)?;
    // The pair is private to this process; nobody else can race for it.
    settings.exclusive = false;
    Ok(settings)
}

impl PtyLink {
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        Ok(PtyLink {
            original: endpoint.original.clone(),
            settings: pty_settings(endpoint)?,
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

use serialport::SerialPort;

impl Link for PtyLink {
    fn describe(&self) -> String {
        self.original.clone()
    }

    fn split(self: Box<Self>) -> Result<(Box<dyn LinkSender>, Box<dyn LinkReceiver>), LinkError> {
        let (master, mut slave, path) = open_pair(&self.original)?;
        serial::configure(&mut slave, &self.settings, &self.original)?;
        let master_fd = tty_into_fd(master);
        std::thread::Builder::new()
            .name("pty loopback plug".into())
            .spawn(move || plug(master_fd))
            .map_err(|e| LinkError::io("cannot start the pty loopback thread", e))?;
        let mut fixed = Map::new();
        fixed.insert("transport".into(), json!("pty"));
        fixed.insert("device".into(), json!(path));
        let (tx, rx) = serial::tty_halves(slave, self.settings, false, fixed, &self.original)?;
        Ok((Box::new(tx), Box::new(rx)))
    }
}

/// The loopback plug: echoes the master onto itself until the slave side is closed (EIO).
fn plug(master: OwnedFd) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match loopscope_sys::read_timeout(&master, &mut buffer, None) {
            Ok(0) => return,
            Ok(n) => {
                if loopscope_sys::write_all(&master, &buffer[..n]).is_err() {
                    return;
                }
            }
            // A signal (the EINTR rule) or a readable-then-empty master: read again.
            Err(e) if crate::link::is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            // EIO: every slave descriptor is closed; the link is gone.
            Err(_) => return,
        }
    }
}

/// For `loopscope reflect pty:`: a pair whose master the reflector echoes onto itself. Returns
/// the slave's path, the master, and a slave descriptor kept open so the pair outlives clients.
pub fn open_far_end(endpoint: &Endpoint) -> Result<(String, OwnedFd, OwnedFd), LinkError> {
    let settings = pty_settings(endpoint)?;
    let (master, mut slave, path) = open_pair(&endpoint.original)?;
    serial::configure(&mut slave, &settings, &endpoint.original)?;
    Ok((path, tty_into_fd(master), tty_into_fd(slave)))
}

//! Writes flagged packets to a pcapng file (tshark, Wireshark and tcpdump read it): one section,
//! one interface description per (input, interface) pair with its name and link type, and
//! nanosecond timestamps. Blocks are serialised by pcap-parser.
//!
//! A regular file is written under a temporary name in the same directory and renamed over the
//! target only when complete, so a failed or interrupted run never leaves half a file, and the
//! target is never opened for writing while it is read: naming an input as the output (under
//! any name: the device and inode decide) is refused before anything is touched. A FIFO or a
//! device (`/dev/stdout`) is written directly.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use loopscope_wire::pcapng;

use crate::CaptureError;

const USER_APPLICATION: &str = "loopscope martians";

/// Where a packet came from: packets of different inputs or interfaces get their own
/// interface descriptions.
pub(crate) struct PacketOrigin<'a> {
    /// Which input the packet came from.
    pub input: u32,
    /// Its interface within that input.
    pub interface: u32,
    /// The link-layer header type.
    pub linktype: u32,
    /// The interface's name, when known.
    pub interface_name: Option<&'a str>,
}

/// Writes packets to a pcapng file, atomically for a regular file (see the module docs).
pub(crate) struct PcapngWriter {
    out: BufWriter<File>,
    path: String,
    /// (temporary file, final path) while a regular file is being written.
    rename: Option<(PathBuf, PathBuf)>,
    /// (input key, interface id in the input) -> interface id in the output.
    interfaces: HashMap<(u32, u32), u32>,
    packets: u64,
}

impl PcapngWriter {
    /// Opens `path` for the matches; refused when it is the same file as one of `inputs`.
    pub(crate) fn create(path: &Path, inputs: &[PathBuf]) -> Result<Self, CaptureError> {
        let display = path.display().to_string();
        let write_error = |source| CaptureError::Write {
            path: display.clone(),
            source,
        };
        let existing = std::fs::metadata(path).ok();
        if let Some(target) = &existing {
            for input in inputs {
                if let Ok(input_metadata) = std::fs::metadata(input)
                    && input_metadata.dev() == target.dev()
                    && input_metadata.ino() == target.ino()
                {
                    return Err(CaptureError::Usage(format!(
                        "--write-matches {display} is the input {} itself: it would be destroyed while read; write elsewhere",
                        input.display()
                    )));
                }
            }
        }
        let regular = existing.as_ref().is_none_or(|metadata| metadata.is_file());
        let (file, rename) = if regular {
            let directory = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let file_name = path.file_name().ok_or_else(|| {
                CaptureError::Usage(format!("--write-matches {display}: not a file name"))
            })?;
            let mut temporary_name = std::ffi::OsString::from(".");
            temporary_name.push(file_name);
            temporary_name.push(format!(".loopscope-{}.tmp", std::process::id()));
            let temporary = directory.join(temporary_name);
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temporary)
                .map_err(write_error)?;
            (file, Some((temporary, path.to_path_buf())))
        } else {
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(write_error)?;
            (file, None)
        };
        let mut writer = PcapngWriter {
            out: BufWriter::with_capacity(1 << 16, file),
            path: display,
            rename,
            interfaces: HashMap::new(),
            packets: 0,
        };
        let bytes =
            pcapng::section_header(USER_APPLICATION).map_err(|e| writer.serialise_error(e))?;
        writer.write(&bytes)?;
        Ok(writer)
    }

    /// Writes one packet.
    pub(crate) fn write_packet(
        &mut self,
        origin: &PacketOrigin<'_>,
        time_ns: u64,
        original_len: u32,
        frame: &[u8],
    ) -> Result<(), CaptureError> {
        let next_id = self.interfaces.len() as u32;
        let if_id = match self.interfaces.get(&(origin.input, origin.interface)) {
            Some(id) => *id,
            None => {
                let bytes = pcapng::interface_description(origin.linktype, origin.interface_name)
                    .map_err(|e| self.serialise_error(e))?;
                self.write(&bytes)?;
                self.interfaces
                    .insert((origin.input, origin.interface), next_id);
                next_id
            }
        };
        let bytes = pcapng::enhanced_packet(if_id, time_ns, original_len, frame, None)
            .map_err(|e| self.serialise_error(e))?;
        self.write(&bytes)?;
        self.packets += 1;
        Ok(())
    }

    /// Flushes, and puts a regular file in place under its name.
    pub(crate) fn finish(mut self) -> Result<u64, CaptureError> {
        let write_error = |path: &str, source| CaptureError::Write {
            path: path.to_string(),
            source,
        };
        self.out
            .flush()
            .map_err(|source| write_error(&self.path, source))?;
        if let Some((temporary, target)) = self.rename.take()
            && let Err(source) = std::fs::rename(&temporary, &target)
        {
            let _ = std::fs::remove_file(&temporary);
            return Err(write_error(&self.path, source));
        }
        Ok(self.packets)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), CaptureError> {
        self.out
            .write_all(bytes)
            .map_err(|source| CaptureError::Write {
                path: self.path.clone(),
                source,
            })
    }

    fn serialise_error(&self, error: pcapng::PcapngError) -> CaptureError {
        CaptureError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(error),
        }
    }
}

impl Drop for PcapngWriter {
    /// A writer dropped before `finish` (an error, a panic) leaves no temporary file behind.
    fn drop(&mut self) {
        if let Some((temporary, _)) = self.rename.take() {
            let _ = std::fs::remove_file(temporary);
        }
    }
}

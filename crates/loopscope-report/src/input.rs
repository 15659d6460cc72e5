//! Reading user-named input files with a size bound: a routes file, a bogon list or a hosts file
//! pointed at `/dev/zero` (or a multi-gigabyte file by mistake) must end in a clear error, not
//! in gigabytes of memory. One reader for every command, with a typed error.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub enum BoundedReadError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file holds more than the option reads.
    #[error("{path} is larger than {max_bytes} bytes (the most this option reads)")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max_bytes: u64,
    },
    /// The file is not text.
    #[error("{path} is not UTF-8 text (at byte {valid_up_to})")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Where the first invalid byte is.
        valid_up_to: usize,
    },
}

/// Reads at most `max_bytes` of `path` (a file, a pipe, `/dev/stdin`); more is an error. Never
/// allocates more than `max_bytes` + 1 bytes, whatever the file claims to be.
pub fn read_bounded(path: &Path, max_bytes: u64) -> Result<Vec<u8>, BoundedReadError> {
    let io_error = |source| BoundedReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > max_bytes {
        return Err(BoundedReadError::TooLarge {
            path: path.to_path_buf(),
            max_bytes,
        });
    }
    Ok(bytes)
}

/// [`read_bounded`] for text files.
pub fn read_bounded_text(path: &Path, max_bytes: u64) -> Result<String, BoundedReadError> {
    let bytes = read_bounded(path, max_bytes)?;
    String::from_utf8(bytes).map_err(|error| BoundedReadError::NotUtf8 {
        path: path.to_path_buf(),
        valid_up_to: error.utf8_error().valid_up_to(),
    })
}

/// One line of a stream that could not be used; the stream goes on after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line runs past the limit (the rest of it is skipped).
    #[error("line is longer than {max_bytes} bytes")]
    TooLong {
        /// The limit.
        max_bytes: usize,
    },
    /// The line is not text.
    #[error("line is not UTF-8 (at byte {valid_up_to})")]
    NotUtf8 {
        /// Where the first invalid byte is.
        valid_up_to: usize,
    },
}

/// Lines of a stream of any length, each at most `max_line` bytes: a bad line (too long, not
/// UTF-8) is an item of its own and reading goes on with the next one, so one broken line does
/// not end a bulk run; memory stays within `max_line` whatever the input. A stream with no line
/// end within [`BoundedLines::MAX_SKIP`] bytes (`/dev/zero`, a binary file) is not text: that
/// ends the stream with an `InvalidData` error instead of reading it forever.
pub struct BoundedLines<R> {
    reader: R,
    max_line: usize,
    buffer: Vec<u8>,
}

impl<R: BufRead> BoundedLines<R> {
    /// The most bytes read in search of one line end.
    pub const MAX_SKIP: usize = 16 << 20;

    /// Lines of `reader`, each at most `max_line` bytes.
    pub fn new(reader: R, max_line: usize) -> Self {
        BoundedLines {
            reader,
            max_line,
            buffer: Vec::new(),
        }
    }
}

impl<R: BufRead> Iterator for BoundedLines<R> {
    /// Err(io) ends the stream; Ok(Err(line)) is one bad line.
    type Item = io::Result<Result<String, LineError>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.buffer.clear();
        let mut too_long = false;
        let mut read_any = false;
        let mut line_bytes = 0usize;
        loop {
            if line_bytes > Self::MAX_SKIP {
                return Some(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "no line end within {} bytes: not a line-oriented text input",
                        Self::MAX_SKIP
                    ),
                )));
            }
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Some(Err(error)),
            };
            if available.is_empty() {
                if !read_any {
                    return None;
                }
                break;
            }
            read_any = true;
            let (chunk, found_newline) = match available.iter().position(|byte| *byte == b'\n') {
                Some(at) => (&available[..at], true),
                None => (available, false),
            };
            if !too_long {
                if self.buffer.len() + chunk.len() > self.max_line {
                    too_long = true;
                    self.buffer.clear();
                } else {
                    self.buffer.extend_from_slice(chunk);
                }
            }
            let consumed = chunk.len() + usize::from(found_newline);
            line_bytes += chunk.len();
            self.reader.consume(consumed);
            if found_newline {
                break;
            }
        }
        if too_long {
            return Some(Ok(Err(LineError::TooLong {
                max_bytes: self.max_line,
            })));
        }
        if self.buffer.last() == Some(&b'\r') {
            self.buffer.pop();
        }
        Some(Ok(
            match String::from_utf8(std::mem::take(&mut self.buffer)) {
                Ok(line) => Ok(line),
                Err(error) => Err(LineError::NotUtf8 {
                    valid_up_to: error.utf8_error().valid_up_to(),
                }),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_zero_is_refused_after_the_bound() {
        let error = read_bounded(Path::new("/dev/zero"), 4096).unwrap_err();
        assert!(
            matches!(
                error,
                BoundedReadError::TooLarge {
                    max_bytes: 4096,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn a_file_within_the_bound_is_read_whole() {
        let dir = std::env::temp_dir().join(format!("loopscope-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("exact");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_bounded(&path, 10).unwrap(), b"0123456789");
        assert!(read_bounded(&path, 9).is_err());
        std::fs::write(&path, b"ok\xff").unwrap();
        assert!(matches!(
            read_bounded_text(&path, 10),
            Err(BoundedReadError::NotUtf8 { valid_up_to: 2, .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_lines_are_items_and_the_stream_goes_on() {
        let input: &[u8] = b"one\r\ntwo\xff\n0123456789ABCDEF\nthree\nlast";
        // A tiny BufReader capacity makes lines span several fill_buf calls.
        let reader = io::BufReader::with_capacity(3, input);
        let lines: Vec<_> = BoundedLines::new(reader, 8)
            .map(|line| line.unwrap())
            .collect();
        assert_eq!(
            lines,
            vec![
                Ok("one".to_string()),
                Err(LineError::NotUtf8 { valid_up_to: 3 }),
                Err(LineError::TooLong { max_bytes: 8 }),
                Ok("three".to_string()),
                Ok("last".to_string()),
            ]
        );
    }

    #[test]
    fn a_long_line_costs_no_more_than_the_bound() {
        let zeros = io::BufReader::new(io::repeat(0).take(10 << 20));
        let mut lines = BoundedLines::new(zeros, 1024);
        assert_eq!(
            lines.next().unwrap().unwrap(),
            Err(LineError::TooLong { max_bytes: 1024 })
        );
        assert!(lines.next().is_none());
    }

    #[test]
    fn an_endless_stream_without_line_ends_is_refused() {
        let zeros = io::BufReader::new(io::repeat(0));
        let mut lines = BoundedLines::new(zeros, 1024);
        let error = lines.next().unwrap().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}

//! The header that numbers each datagram of a datagram link (`udp:`, `unixgram:`): a magic
//! whose last byte is the format version, then a 64-bit big-endian sequence number, then the
//! payload.
//!
//! ```text
//! 0           4                 12
//! | L S D 01  | sequence number | payload ...
//! ```
//!
//! What the sequence numbers mean (loss, duplication, reordering) is the datagram link's
//! business; this module is only the byte layout.

/// The magic: "LSD" and format version 1.
pub const MAGIC: [u8; 4] = [b'L', b'S', b'D', 1];
/// Magic and sequence number.
pub const HEADER_LEN: usize = 12;

/// Why a datagram does not start with our header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    #[error("{0} bytes is shorter than the 12-byte datagram header")]
    /// Fewer bytes than a header (the count given).
    Truncated(usize),
    #[error("not a loopscope datagram (no LSD magic)")]
    /// The bytes do not start with "LSD".
    NotOurs,
    #[error("loopscope datagram format version {0} is not version 1")]
    /// "LSD" with another format version (the one given).
    UnknownVersion(u8),
}

/// A view of a datagram: header, then payload.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Datagram<T> {
    /// Wraps `buffer` after checking it holds a header of ours.
    pub fn new_checked(buffer: T) -> Result<Self, DatagramError> {
        let bytes = buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Err(DatagramError::Truncated(bytes.len()));
        }
        if bytes[..3] != MAGIC[..3] {
            return Err(DatagramError::NotOurs);
        }
        if bytes[3] != MAGIC[3] {
            return Err(DatagramError::UnknownVersion(bytes[3]));
        }
        Ok(Datagram { buffer })
    }

    /// The sequence number.
    pub fn sequence(&self) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.buffer.as_ref()[4..HEADER_LEN]);
        u64::from_be_bytes(bytes)
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

/// A datagram header, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramRepr {
    /// The datagram's number in its link's stream.
    pub sequence: u64,
}

impl DatagramRepr {
    /// Reads the header of a checked view.
    pub fn parse<T: AsRef<[u8]>>(datagram: &Datagram<T>) -> Self {
        DatagramRepr {
            sequence: datagram.sequence(),
        }
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buffer`.
    pub fn emit(&self, buffer: &mut [u8]) {
        buffer[..4].copy_from_slice(&MAGIC);
        buffer[4..HEADER_LEN].copy_from_slice(&self.sequence.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_magic_then_big_endian_sequence() {
        let mut d = vec![0u8; HEADER_LEN];
        DatagramRepr {
            sequence: 0x0102_0304_0506_0708,
        }
        .emit(&mut d);
        d.push(b'x');
        assert_eq!(d, b"LSD\x01\x01\x02\x03\x04\x05\x06\x07\x08x");
        let view = Datagram::new_checked(&d[..]).unwrap();
        assert_eq!(view.sequence(), 0x0102_0304_0506_0708);
        assert_eq!(view.payload(), b"x");
    }

    #[test]
    fn typed_errors() {
        assert_eq!(
            Datagram::new_checked(&b"LSD\x01"[..]).unwrap_err(),
            DatagramError::Truncated(4)
        );
        assert_eq!(
            Datagram::new_checked(&b"LSD\x02\0\0\0\0\0\0\0\0"[..]).unwrap_err(),
            DatagramError::UnknownVersion(2)
        );
        assert_eq!(
            Datagram::new_checked(&b"not ours, long enough"[..]).unwrap_err(),
            DatagramError::NotOurs
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Datagram::new_checked(&bytes[..]).map(|d| (d.sequence(), d.payload().len()));
        }

        /// Every valid datagram (built by hand here) parses and emits back to the same header.
        #[test]
        fn round_trip(sequence: u64, payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = b"LSD\x01".to_vec();
            bytes.extend_from_slice(&sequence.to_be_bytes());
            bytes.extend_from_slice(&payload);
            let view = Datagram::new_checked(&bytes[..]).unwrap();
            let repr = DatagramRepr::parse(&view);
            prop_assert_eq!(repr.sequence, sequence);
            prop_assert_eq!(view.payload(), &payload[..]);
            let mut out = vec![0u8; HEADER_LEN];
            repr.emit(&mut out);
            out.extend_from_slice(view.payload());
            prop_assert_eq!(out, bytes);
        }

        /// What parse accepts, emit reproduces.
        #[test]
        fn parse_accepts_only_what_emit_produces(bytes in proptest::collection::vec(any::<u8>(), 12..20), magic in prop_oneof![Just(true), Just(false)]) {
            let mut bytes = bytes;
            if magic {
                bytes[..4].copy_from_slice(&MAGIC);
            }
            if let Ok(view) = Datagram::new_checked(&bytes[..]) {
                let mut out = vec![0u8; HEADER_LEN];
                DatagramRepr::parse(&view).emit(&mut out);
                prop_assert_eq!(&out[..], &bytes[..HEADER_LEN]);
            }
        }
    }
}

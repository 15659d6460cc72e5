//! The frame `ping` sends over any link, and a decoder that finds frames in a byte stream.
//!
//! A frame is self-delimiting so that it survives stream links (TCP, serial) where writes merge
//! and split. All integers are big-endian:
//!
//! ```text
//! 0      4        6          14          22              22+n      26+n
//! | magic | length | sequence | sent time | payload (n B) | CRC-32 |
//! ```
//!
//! - magic: `F0 4C 50 47` (`0xF0` then "LPG");
//! - length: payload bytes `n` (u16);
//! - sequence (u64) and send time (u64, nanoseconds of the sender's clock, opaque to the far
//!   end);
//! - the payload: `n` bytes derived from the sequence number ([`payload_byte`]), so a corrupted
//!   payload is recognised even when its CRC happens to match;
//! - CRC-32 (IEEE 802.3 polynomial, as zlib computes it) over everything after the magic.

/// The magic that starts every frame.
pub const MAGIC: [u8; 4] = [0xF0, b'L', b'P', b'G'];
/// Magic, length, sequence, send time.
pub const HEADER_LEN: usize = 4 + 2 + 8 + 8;
/// The CRC-32.
pub const TRAILER_LEN: usize = 4;
/// Largest payload a frame can carry.
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// Why bytes are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("{have} bytes is shorter than the frame ({need} bytes)")]
    /// `have` bytes, while the header announces a frame of `need`.
    Truncated {
        /// Bytes there are.
        have: usize,
        /// Bytes the frame needs.
        need: usize,
    },
    #[error("the bytes do not start with the ping frame magic")]
    /// The bytes do not start with the frame magic.
    BadMagic,
    #[error("frame CRC-32 {found:#010x} is wrong (expected {expected:#010x})")]
    /// The frame carries CRC `found`; its bytes give `expected`.
    BadChecksum {
        /// The CRC the frame carries.
        found: u32,
        /// The CRC of its bytes.
        expected: u32,
    },
}

/// A view of a frame at the start of `buffer` (which may run on past the frame's end).
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` after checking it starts with the magic and holds the whole frame its
    /// header announces.
    pub fn new_checked(buffer: T) -> Result<Self, FrameError> {
        let bytes = buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            if bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] != MAGIC {
                return Err(FrameError::BadMagic);
            }
            return Err(FrameError::Truncated {
                have: bytes.len(),
                need: HEADER_LEN + TRAILER_LEN,
            });
        }
        if bytes[..MAGIC.len()] != MAGIC {
            return Err(FrameError::BadMagic);
        }
        let frame = Frame { buffer };
        let need = frame.total_len();
        let have = frame.buffer.as_ref().len();
        if have < need {
            return Err(FrameError::Truncated { have, need });
        }
        Ok(frame)
    }

    /// Payload length from the header.
    pub fn payload_len(&self) -> usize {
        let b = self.buffer.as_ref();
        usize::from(u16::from_be_bytes([b[4], b[5]]))
    }

    /// Header, payload and CRC.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len() + TRAILER_LEN
    }

    /// The sequence number.
    pub fn sequence(&self) -> u64 {
        self.read_u64(6)
    }

    /// The send time the sender put in (nanoseconds of its clock).
    pub fn sent_ns(&self) -> u64 {
        self.read_u64(14)
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + self.payload_len()]
    }

    /// The CRC the frame carries.
    pub fn checksum(&self) -> u32 {
        let end = self.total_len();
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[end - 4], b[end - 3], b[end - 2], b[end - 1]])
    }

    /// The CRC the frame should carry.
    pub fn compute_checksum(&self) -> u32 {
        crc32fast::hash(&self.buffer.as_ref()[MAGIC.len()..self.total_len() - TRAILER_LEN])
    }

    fn read_u64(&self, at: usize) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.buffer.as_ref()[at..at + 8]);
        u64::from_be_bytes(bytes)
    }
}

/// A frame, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRepr<'a> {
    /// The sequence number.
    pub sequence: u64,
    /// The send time (nanoseconds of the sender's clock, opaque to the far end).
    pub sent_ns: u64,
    /// The payload bytes (at most [`MAX_PAYLOAD`] are emitted).
    pub payload: &'a [u8],
}

impl<'a> FrameRepr<'a> {
    /// Parses a frame and verifies its CRC.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &Frame<&'a T>) -> Result<Self, FrameError> {
        let (found, expected) = (frame.checksum(), frame.compute_checksum());
        if found != expected {
            return Err(FrameError::BadChecksum { found, expected });
        }
        let buffer: &'a [u8] = frame.buffer.as_ref();
        Ok(FrameRepr {
            sequence: frame.sequence(),
            sent_ns: frame.sent_ns(),
            payload: &buffer[HEADER_LEN..HEADER_LEN + frame.payload_len()],
        })
    }

    /// Bytes needed to emit this frame (the payload is cut at [`MAX_PAYLOAD`]).
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len().min(MAX_PAYLOAD) + TRAILER_LEN
    }

    /// Writes the frame into the first [`Self::buffer_len`] bytes of `buffer`.
    pub fn emit(&self, buffer: &mut [u8]) {
        let payload = &self.payload[..self.payload.len().min(MAX_PAYLOAD)];
        buffer[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
        write_around_payload(buffer, self.sequence, self.sent_ns, payload.len());
    }
}

/// Writes header and CRC around a payload already in place at `buffer[HEADER_LEN..]`.
fn write_around_payload(buffer: &mut [u8], sequence: u64, sent_ns: u64, payload_len: usize) {
    let end = HEADER_LEN + payload_len;
    buffer[..4].copy_from_slice(&MAGIC);
    buffer[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    buffer[6..14].copy_from_slice(&sequence.to_be_bytes());
    buffer[14..22].copy_from_slice(&sent_ns.to_be_bytes());
    let crc = crc32fast::hash(&buffer[MAGIC.len()..end]);
    buffer[end..end + TRAILER_LEN].copy_from_slice(&crc.to_be_bytes());
}

/// Byte `index` of the payload of frame `sequence`.
pub fn payload_byte(sequence: u64, index: usize) -> u8 {
    (sequence as u8).wrapping_add(index as u8).wrapping_mul(31) ^ 0x5A
}

/// Builds the whole frame for `sequence` with a `payload_len`-byte payload into `out`
/// (cleared first).
pub fn build(out: &mut Vec<u8>, sequence: u64, sent_ns: u64, payload_len: usize) {
    let payload_len = payload_len.min(MAX_PAYLOAD);
    out.clear();
    out.resize(HEADER_LEN + payload_len + TRAILER_LEN, 0);
    for (index, byte) in out[HEADER_LEN..HEADER_LEN + payload_len]
        .iter_mut()
        .enumerate()
    {
        *byte = payload_byte(sequence, index);
    }
    write_around_payload(out, sequence, sent_ns, payload_len);
}

/// What the stream decoder found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// An intact frame: its sequence, send time and total length.
    Frame {
        /// Its sequence number.
        sequence: u64,
        /// Its send time.
        sent_ns: u64,
        /// Its length in bytes, header and CRC included.
        len: usize,
    },
    /// A frame whose CRC or payload was wrong, or whose length was not the run's.
    Corrupt,
}

/// Finds frames in a byte stream. After a corrupt frame it scans on for the next magic, so one
/// line error costs one frame, not the run.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    buffer: Vec<u8>,
    /// The payload length every frame of this run has: a frame that claims another is corrupt
    /// at once, rather than stalling the decoder until a bogus length's worth of bytes arrives.
    expected_payload: Option<usize>,
}

impl StreamDecoder {
    /// A decoder for a run whose frames all carry `payload_len` payload bytes.
    pub fn expecting(payload_len: usize) -> Self {
        StreamDecoder {
            buffer: Vec::new(),
            expected_payload: Some(payload_len),
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next complete frame, a corrupt one, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Option<Decoded> {
        match self.buffer.windows(MAGIC.len()).position(|w| w == MAGIC) {
            Some(start) => {
                self.buffer.drain(..start);
            }
            None => {
                // Keep what may be the start of a magic cut by the end of the data so far.
                let keep = self.buffer.len().min(MAGIC.len() - 1);
                let cut = self.buffer.len() - keep;
                self.buffer.drain(..cut);
                return None;
            }
        }
        if self.buffer.len() < HEADER_LEN {
            return None;
        }
        let payload_len = usize::from(u16::from_be_bytes([self.buffer[4], self.buffer[5]]));
        if self.expected_payload.is_some_and(|p| p != payload_len) {
            self.buffer.drain(..1);
            return Some(Decoded::Corrupt);
        }
        // Not complete yet: the rest of the frame has not arrived.
        let Ok(frame) = Frame::new_checked(&self.buffer[..]) else {
            return None;
        };
        let len = frame.total_len();
        let decoded = match FrameRepr::parse(&frame) {
            Ok(repr)
                if repr
                    .payload
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == payload_byte(repr.sequence, i)) =>
            {
                Decoded::Frame {
                    sequence: repr.sequence,
                    sent_ns: repr.sent_ns,
                    len,
                }
            }
            Ok(_) => Decoded::Corrupt,
            Err(_) => {
                // Skip this magic only: the next frame may start inside this one.
                self.buffer.drain(..1);
                return Some(Decoded::Corrupt);
            }
        };
        self.buffer.drain(..len);
        Some(decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// CRC-32 (IEEE, reflected, as zlib) computed bit by bit: an independent reference.
    fn bitwise_crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn crc_reference_check_value() {
        // The CRC-32 check value of "123456789".
        assert_eq!(bitwise_crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn layout_is_as_documented() {
        let mut f = Vec::new();
        build(&mut f, 0x0102030405060708, 0x1112131415161718, 2);
        let mut expected = vec![0xF0, b'L', b'P', b'G', 0, 2];
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        expected.extend_from_slice(&[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
        expected.extend_from_slice(&[payload_byte(8, 0), payload_byte(8, 1)]);
        let crc = bitwise_crc32(&expected[4..]);
        expected.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(f, expected);
        let frame = Frame::new_checked(&f[..]).unwrap();
        assert_eq!(
            FrameRepr::parse(&frame).unwrap(),
            FrameRepr {
                sequence: 0x0102030405060708,
                sent_ns: 0x1112131415161718,
                payload: &expected[HEADER_LEN..HEADER_LEN + 2]
            }
        );
    }

    #[test]
    fn typed_errors() {
        let mut f = Vec::new();
        build(&mut f, 1, 2, 10);
        assert_eq!(
            Frame::new_checked(&f[..f.len() - 1]).unwrap_err(),
            FrameError::Truncated {
                have: f.len() - 1,
                need: f.len()
            }
        );
        assert_eq!(
            Frame::new_checked(&b"XLPGxxxxxxxxxxxxxxxxxxxxxxxx"[..]).unwrap_err(),
            FrameError::BadMagic
        );
        f[HEADER_LEN] ^= 0x80;
        let frame = Frame::new_checked(&f[..]).unwrap();
        assert!(matches!(
            FrameRepr::parse(&frame),
            Err(FrameError::BadChecksum { .. })
        ));
    }

    #[test]
    fn decoder_reassembles_split_frames_and_resyncs_after_corruption() {
        let mut stream = Vec::new();
        let mut f = Vec::new();
        for seq in 0..5u64 {
            build(&mut f, seq, 1000 + seq, 7);
            if seq == 2 {
                f[HEADER_LEN + 1] ^= 0x10; // a bit error in the payload
            }
            stream.extend_from_slice(b"xx"); // line noise between frames
            stream.extend_from_slice(&f);
        }
        let mut decoder = StreamDecoder::default();
        let mut seen = Vec::new();
        for piece in stream.chunks(3) {
            decoder.push(piece);
            while let Some(p) = decoder.next_frame() {
                seen.push(p);
            }
        }
        let frames: Vec<_> = seen
            .iter()
            .filter_map(|p| match p {
                Decoded::Frame {
                    sequence, sent_ns, ..
                } => Some((*sequence, *sent_ns)),
                Decoded::Corrupt => None,
            })
            .collect();
        assert_eq!(frames, vec![(0, 1000), (1, 1001), (3, 1003), (4, 1004)]);
        assert_eq!(seen.iter().filter(|p| **p == Decoded::Corrupt).count(), 1);
    }

    #[test]
    fn a_frame_with_a_foreign_length_is_corrupt_at_once() {
        let mut f = Vec::new();
        build(&mut f, 3, 0, 9);
        let mut decoder = StreamDecoder::expecting(8);
        decoder.push(&f[..HEADER_LEN]);
        assert_eq!(decoder.next_frame(), Some(Decoded::Corrupt));
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut decoder = StreamDecoder::default();
            let mut stream = MAGIC.to_vec();
            stream.extend_from_slice(&bytes);
            decoder.push(&stream);
            while decoder.next_frame().is_some() {}
            let _ = Frame::new_checked(&bytes[..]).map(|f| FrameRepr::parse(&f).is_ok());
        }

        /// Every valid frame (CRC computed by the bit-serial reference) parses and emits back
        /// to the same bytes.
        #[test]
        fn round_trip(sequence: u64, sent_ns: u64, payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            bytes.extend_from_slice(&sequence.to_be_bytes());
            bytes.extend_from_slice(&sent_ns.to_be_bytes());
            bytes.extend_from_slice(&payload);
            let crc = bitwise_crc32(&bytes[4..]);
            bytes.extend_from_slice(&crc.to_be_bytes());

            let frame = Frame::new_checked(&bytes[..]).unwrap();
            let repr = FrameRepr::parse(&frame).unwrap();
            prop_assert_eq!((repr.sequence, repr.sent_ns, repr.payload), (sequence, sent_ns, &payload[..]));
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(&mut out);
            prop_assert_eq!(out, bytes);
        }

        /// What parse accepts, emit reproduces exactly (one flipped bit anywhere is refused).
        #[test]
        fn parse_accepts_only_what_emit_produces(sequence: u64, payload_len in 0usize..64, flip in any::<prop::sample::Index>()) {
            let mut bytes = Vec::new();
            build(&mut bytes, sequence, 7, payload_len);
            let bit = flip.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            if let Ok(frame) = Frame::new_checked(&bytes[..])
                && let Ok(repr) = FrameRepr::parse(&frame)
            {
                let mut out = vec![0u8; repr.buffer_len()];
                repr.emit(&mut out);
                prop_assert_eq!(&out[..], &bytes[..frame.total_len()]);
            }
        }
    }
}

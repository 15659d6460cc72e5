//! The T1 (DS1) frame tables: ANSI T1.107 §8.1 and ANSI T1.403 §8.1.
//!
//! A frame is 193 bits: one F-bit, then timeslots 1 to 24 of 8 bits each, bit 1 (the MSB) of
//! each octet first. Frames are numbered from 1 within the (extended) superframe, as in the
//! standards' tables; the functions here take that 1-based number.

/// Bits in one T1 frame.
pub const FRAME_BITS: usize = 193;

/// SF (D4) F-bits of frames 1 to 12 (T1.107 Table 4): Ft = 1 0 1 0 1 0 in the odd frames,
/// Fs = 0 0 1 1 1 0 in the even frames.
pub const SF_FRAMING_BITS: [u8; 12] = [1, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0, 0];

/// The ESF framing pattern sequence (FPS) carried by frames 4, 8, 12, 16, 20, 24
/// (T1.403 Table 3).
pub const ESF_FPS: [u8; 6] = [0, 0, 1, 0, 1, 1];

/// What the F-bit of an ESF frame carries (T1.403 §8.1.2, Table 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EsfBit {
    /// Frames 1, 3, 5, … 23: one bit of the 4 kbit/s facility data link (the "m" bits).
    DataLink,
    /// Frames 2, 6, 10, 14, 18, 22: check bit C1..C6 (the argument) of the previous ESF's CRC-6.
    Crc(u32),
    /// Frames 4, 8, … 24: the framing pattern bit (the argument: 0 or 1).
    Fps(u8),
}

/// The role of the F-bit of ESF frame `frame` (1..=24).
pub fn esf_bit(frame: usize) -> EsfBit {
    debug_assert!((1..=24).contains(&frame));
    if frame % 2 == 1 {
        EsfBit::DataLink
    } else if frame % 4 == 2 {
        EsfBit::Crc((frame / 4 + 1) as u32)
    } else {
        EsfBit::Fps(ESF_FPS[frame / 4 - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esf_roles_follow_the_table() {
        let crc_frames: Vec<usize> = (1..=24)
            .filter(|&f| matches!(esf_bit(f), EsfBit::Crc(_)))
            .collect();
        assert_eq!(crc_frames, [2, 6, 10, 14, 18, 22]);
        assert_eq!(esf_bit(2), EsfBit::Crc(1));
        assert_eq!(esf_bit(22), EsfBit::Crc(6));
        let fps: Vec<u8> = (1..=24)
            .filter_map(|f| match esf_bit(f) {
                EsfBit::Fps(bit) => Some(bit),
                _ => None,
            })
            .collect();
        assert_eq!(fps, ESF_FPS);
        assert_eq!(
            (1..=24).filter(|&f| esf_bit(f) == EsfBit::DataLink).count(),
            12
        );
    }
}

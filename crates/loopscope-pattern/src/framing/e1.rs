//! The E1 frame tables: ITU-T G.704 §2.3 (Tables 4A and 5B) and the alignment rules of ITU-T
//! G.706 §4.
//!
//! A frame is 256 bits: timeslots 0 to 31 of 8 bits each, bit 1 (the MSB) first. Timeslot 0
//! alternates:
//!
//! - the **frame alignment signal** (FAS) frame: `Si 0 0 1 1 0 1 1`;
//! - the **NFAS** frame: `Si 1 A Sa4 Sa5 Sa6 Sa7 Sa8` (A: remote alarm; Sa: spare, sent as 1).
//!
//! With CRC-4 (G.704 Table 5B) the 16-frame multiframe numbers frames 0 to 15, FAS in the even
//! ones, and the Si bits carry:
//!
//! | frames            | Si bit                                   |
//! |-------------------|------------------------------------------|
//! | 0, 2, 4, 6        | C1, C2, C3, C4 of sub-multiframe I       |
//! | 8, 10, 12, 14     | C1, C2, C3, C4 of sub-multiframe II      |
//! | 1, 3, 5, 7, 9, 11 | multiframe alignment signal 0 0 1 0 1 1  |
//! | 13, 15            | E-bits (0: the far end received an errored sub-multiframe) |

/// Bits in one E1 frame.
pub const FRAME_BITS: usize = 256;

/// Bits 2 to 8 of timeslot 0 in a FAS frame: `0011011`.
pub const FAS: u8 = 0b001_1011;
/// Mask of bits 2 to 8 of timeslot 0.
pub const FAS_MASK: u8 = 0x7F;
/// Bit 2 of timeslot 0 in an NFAS frame is always 1.
pub const NFAS_BIT2: u8 = 0x40;
/// Bit 3 of timeslot 0 in an NFAS frame: the remote alarm indication (A-bit).
pub const NFAS_A_BIT: u8 = 0x20;
/// Sa4..Sa8 sent as 1 when not used (G.704 §2.3.2 note).
pub const NFAS_SA_BITS: u8 = 0x1F;
/// The Si bit: bit 1, the most significant.
pub const SI_BIT: u8 = 0x80;

/// The multiframe alignment signal in the Si bits of frames 1, 3, 5, 7, 9, 11.
pub const MFAS: [u8; 6] = [0, 0, 1, 0, 1, 1];

/// What the Si bit of CRC-4 multiframe frame `frame` (0..=15) carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiBit {
    /// Check bit C1..C4 (the argument) of the previous sub-multiframe's CRC-4.
    Crc(u32),
    /// A multiframe alignment bit (the argument: 0 or 1).
    Mfas(u8),
    /// An E-bit: 1, or 0 to report an errored sub-multiframe received by the far end.
    E,
}

/// The role of the Si bit in CRC-4 multiframe frame `frame` (0..=15).
pub fn si_bit(frame: usize) -> SiBit {
    debug_assert!(frame < 16);
    if frame.is_multiple_of(2) {
        SiBit::Crc(((frame % 8) / 2 + 1) as u32)
    } else if frame < 12 {
        SiBit::Mfas(MFAS[frame / 2])
    } else {
        SiBit::E
    }
}

/// Consecutive errored frame alignment signals that lose frame alignment (G.706 §4.1.1).
pub const FAS_ERRORS_FOR_LOSS: u32 = 3;
/// Errored CRC-4 blocks in [`CRC4_LOSS_WINDOW`] that force a new frame search (G.706 §4.3.2:
/// 915 or more of 1000).
pub const CRC4_LOSS_ERRORS: u32 = 915;
/// The window of CRC-4 blocks over which [`CRC4_LOSS_ERRORS`] is counted (G.706 §4.3.2).
pub const CRC4_LOSS_WINDOW: u32 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_roles_follow_table_5b() {
        let roles: Vec<SiBit> = (0..16).map(si_bit).collect();
        assert_eq!(roles[0], SiBit::Crc(1));
        assert_eq!(roles[6], SiBit::Crc(4));
        assert_eq!(roles[8], SiBit::Crc(1));
        assert_eq!(roles[14], SiBit::Crc(4));
        let mfas: Vec<u8> = roles
            .iter()
            .filter_map(|r| match r {
                SiBit::Mfas(bit) => Some(*bit),
                _ => None,
            })
            .collect();
        assert_eq!(mfas, MFAS);
        assert_eq!(roles[13], SiBit::E);
        assert_eq!(roles[15], SiBit::E);
    }
}

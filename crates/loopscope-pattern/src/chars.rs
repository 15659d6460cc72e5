//! Patterns over narrow characters: a serial line set to 5, 6 or 7 data bits carries only that
//! many bits of each byte; the bits above are lost on the wire and read back as zero. To test
//! such a line the pattern's bit stream is laid out `width` bits per character, and the
//! receiver takes back exactly those bits.
//!
//! The layout follows the pattern's bit order. Least significant bit first (as a UART sends):
//! bit `j` of the sequence is bit `j % width` of character `j / width`. Most significant first:
//! bit `j` is bit `width - 1 - j % width` of that character. In both cases the characters'
//! bits, read in the line's order, are the pattern's bits in sequence.

use crate::spec::BitOrder;

/// Turns the bytes of a pattern (8 bits each, in `order`) into characters of `width` bits.
#[derive(Debug, Clone)]
pub struct CharPacker {
    width: u32,
    order: BitOrder,
    /// Sequence bits not yet placed, the oldest in bit 0.
    bits: u64,
    count: u32,
}

/// Turns received characters of `width` bits back into the pattern's bytes (8 bits each, in
/// `order`); bits above `width` are ignored.
#[derive(Debug, Clone)]
pub struct CharUnpacker {
    width: u32,
    order: BitOrder,
    bits: u64,
    count: u32,
}

fn check_width(width: u8) -> u32 {
    assert!(
        (1..=8).contains(&width),
        "a character has 1 to 8 bits, not {width}"
    );
    u32::from(width)
}

impl CharPacker {
    /// # Panics
    /// If `width` is not 1..=8.
    pub fn new(width: u8, order: BitOrder) -> Self {
        CharPacker {
            width: check_width(width),
            order,
            bits: 0,
            count: 0,
        }
    }

    /// Appends to `out` every whole character the bits of `bytes` complete; leftover bits wait
    /// for the next call.
    pub fn pack(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let mask = (1u64 << self.width) - 1;
        out.reserve(bytes.len() * 8 / self.width as usize + 1);
        for &byte in bytes {
            let in_sequence = match self.order {
                BitOrder::LsbFirst => byte,
                BitOrder::MsbFirst => byte.reverse_bits(),
            };
            self.bits |= u64::from(in_sequence) << self.count;
            self.count += 8;
            while self.count >= self.width {
                let char_bits = (self.bits & mask) as u8;
                out.push(match self.order {
                    BitOrder::LsbFirst => char_bits,
                    BitOrder::MsbFirst => char_bits.reverse_bits() >> (8 - self.width),
                });
                self.bits >>= self.width;
                self.count -= self.width;
            }
        }
    }

    /// Sequence bits waiting for a character to fill (fewer than `width`).
    pub fn pending_bits(&self) -> u32 {
        self.count
    }
}

impl CharUnpacker {
    /// # Panics
    /// If `width` is not 1..=8.
    pub fn new(width: u8, order: BitOrder) -> Self {
        CharUnpacker {
            width: check_width(width),
            order,
            bits: 0,
            count: 0,
        }
    }

    /// Appends to `out` every whole byte the data bits of `chars` complete.
    pub fn unpack(&mut self, chars: &[u8], out: &mut Vec<u8>) {
        let mask = (1u64 << self.width) - 1;
        out.reserve(chars.len() * self.width as usize / 8 + 1);
        for &c in chars {
            let in_sequence = match self.order {
                BitOrder::LsbFirst => u64::from(c) & mask,
                BitOrder::MsbFirst => u64::from((c << (8 - self.width)).reverse_bits()) & mask,
            };
            self.bits |= in_sequence << self.count;
            self.count += self.width;
            while self.count >= 8 {
                let byte = self.bits as u8;
                out.push(match self.order {
                    BitOrder::LsbFirst => byte,
                    BitOrder::MsbFirst => byte.reverse_bits(),
                });
                self.bits >>= 8;
                self.count -= 8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence a byte stream carries, bit by bit, in `order`.
    fn sequence_of_bytes(bytes: &[u8], order: BitOrder) -> Vec<u8> {
        bytes
            .iter()
            .flat_map(|b| {
                (0..8).map(move |k| match order {
                    BitOrder::LsbFirst => (b >> k) & 1,
                    BitOrder::MsbFirst => (b >> (7 - k)) & 1,
                })
            })
            .collect()
    }

    /// The sequence characters of `width` bits carry, bit by bit, in `order`.
    fn sequence_of_chars(chars: &[u8], width: u32, order: BitOrder) -> Vec<u8> {
        chars
            .iter()
            .flat_map(|c| {
                (0..width).map(move |k| match order {
                    BitOrder::LsbFirst => (c >> k) & 1,
                    BitOrder::MsbFirst => (c >> (width - 1 - k)) & 1,
                })
            })
            .collect()
    }

    #[test]
    fn seven_bit_characters_carry_the_sequence_bit_for_bit() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 37 + 11) as u8).collect();
        for order in [BitOrder::LsbFirst, BitOrder::MsbFirst] {
            for width in 5..=8u8 {
                let mut packer = CharPacker::new(width, order);
                let mut chars = Vec::new();
                for piece in bytes.chunks(13) {
                    packer.pack(piece, &mut chars);
                }
                assert!(chars.iter().all(|c| u32::from(*c) >> width == 0), "{width}");
                let sent = sequence_of_bytes(&bytes, order);
                let on_wire = sequence_of_chars(&chars, u32::from(width), order);
                assert_eq!(on_wire, sent[..on_wire.len()], "{width} {order:?}");
                assert_eq!(sent.len() - on_wire.len(), packer.pending_bits() as usize);

                // The receiver gets the characters with junk in the unused bits (a line that
                // sets them, or noise): it takes back only the data bits.
                let junk = !(((1u16 << width) - 1) as u8);
                let received: Vec<u8> = chars.iter().map(|c| c | junk).collect();
                let mut unpacker = CharUnpacker::new(width, order);
                let mut back = Vec::new();
                for piece in received.chunks(7) {
                    unpacker.unpack(piece, &mut back);
                }
                assert_eq!(back, bytes[..back.len()], "{width} {order:?}");
                assert_eq!(back.len(), on_wire.len() / 8);
            }
        }
    }

    #[test]
    fn hand_worked_seven_bit_layout() {
        // 0xff 0x00: sequence 11111111 00000000 (LSB first). In 7-bit characters: 1111111,
        // 1000000 (bit 0 set), and 2 bits left over.
        let mut packer = CharPacker::new(7, BitOrder::LsbFirst);
        let mut chars = Vec::new();
        packer.pack(&[0xff, 0x00], &mut chars);
        assert_eq!(chars, [0x7f, 0x01]);
        assert_eq!(packer.pending_bits(), 2);
    }
}

//! The two framing CRCs, fed in transmission order (first-sent bit first).
//!
//! - **CRC-6** of ESF, ANSI T1.403 §8.1.2.2: generator `x^6 + x + 1`; the check bits are the
//!   remainder of `M(x)·x^6` divided by the generator, where `M(x)` is the 4632 bits of the
//!   previous extended superframe with every F-bit set to 1, the first-transmitted bit the
//!   highest power. C1 is the most significant bit of the remainder.
//! - **CRC-4** of E1, ITU-T G.704 §2.3.3.5: generator `x^4 + x + 1`; the remainder of
//!   `M(x)·x^4` over the 2048 bits of the previous sub-multiframe with the C-bit positions set
//!   to 0. C1 is the most significant bit.
//!
//! Neither is a common CRC catalogue entry with a crate behind it (and both are fed a single
//! framing bit between whole octets), so they are written here: a 256-entry table per
//! polynomial, the register kept left-aligned in a byte so bytes and single bits share it.

/// `x + 1`, the generator without its top term, left-aligned in 8 bits for a 6-bit register.
const CRC6_POLY_ALIGNED: u8 = 0b0000_0011 << 2;
/// `x + 1` left-aligned in 8 bits for a 4-bit register.
const CRC4_POLY_ALIGNED: u8 = 0b0000_0011 << 4;

const fn table(poly_aligned: u8) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let mut reg = i as u8;
        let mut bit = 0;
        while bit < 8 {
            reg = if reg & 0x80 != 0 {
                (reg << 1) ^ poly_aligned
            } else {
                reg << 1
            };
            bit += 1;
        }
        table[i] = reg;
        i += 1;
    }
    table
}

/// Slicing-by-8: `tables[k][x]` is the register after the byte `x` and then `k` zero bytes,
/// from a zero register. The CRC is linear, so 8 bytes fold into the register as 8 independent
/// look-ups XORed together instead of 8 dependent ones.
const fn sliced(poly_aligned: u8) -> [[u8; 256]; 8] {
    let base = table(poly_aligned);
    let mut tables = [[0u8; 256]; 8];
    tables[0] = base;
    let mut k = 1;
    while k < 8 {
        let mut x = 0;
        while x < 256 {
            tables[k][x] = base[tables[k - 1][x] as usize];
            x += 1;
        }
        k += 1;
    }
    tables
}

static CRC6_TABLES: [[u8; 256]; 8] = sliced(CRC6_POLY_ALIGNED);
static CRC4_TABLES: [[u8; 256]; 8] = sliced(CRC4_POLY_ALIGNED);

/// A running CRC of `WIDTH` bits (6 or 4) over a bit stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Crc<const WIDTH: u32> {
    /// The register, left-aligned in the byte (its low `8 - WIDTH` bits stay 0).
    aligned: u8,
}

/// The ESF CRC-6.
pub type Crc6 = Crc<6>;
/// The E1 CRC-4.
pub type Crc4 = Crc<4>;

impl<const WIDTH: u32> Crc<WIDTH> {
    const POLY: u8 = if WIDTH == 6 {
        CRC6_POLY_ALIGNED
    } else {
        CRC4_POLY_ALIGNED
    };

    /// A CRC register at zero, its value at the start of each block.
    pub fn new() -> Self {
        Crc { aligned: 0 }
    }

    fn tables() -> &'static [[u8; 256]; 8] {
        if WIDTH == 6 {
            &CRC6_TABLES
        } else {
            &CRC4_TABLES
        }
    }

    /// Feeds one bit (0 or 1).
    #[inline]
    pub fn bit(&mut self, bit: u8) {
        let feedback = (self.aligned >> 7) ^ (bit & 1);
        self.aligned <<= 1;
        if feedback != 0 {
            self.aligned ^= Self::POLY;
        }
    }

    /// Feeds whole octets, each most significant bit first.
    #[inline]
    pub fn bytes(&mut self, bytes: &[u8]) {
        let t = Self::tables();
        let mut reg = self.aligned;
        let (groups, rest) = bytes.as_chunks::<8>();
        for g in groups {
            reg = t[7][usize::from(reg ^ g[0])]
                ^ t[6][usize::from(g[1])]
                ^ t[5][usize::from(g[2])]
                ^ t[4][usize::from(g[3])]
                ^ t[3][usize::from(g[4])]
                ^ t[2][usize::from(g[5])]
                ^ t[1][usize::from(g[6])]
                ^ t[0][usize::from(g[7])];
        }
        for &byte in rest {
            reg = t[0][usize::from(reg ^ byte)];
        }
        self.aligned = reg;
    }

    /// The remainder, `WIDTH` bits, C1 in the most significant of them.
    pub fn value(&self) -> u8 {
        self.aligned >> (8 - WIDTH)
    }

    /// Check bit `k` (1-based, C1 first).
    pub fn check_bit(&self, k: u32) -> u8 {
        (self.value() >> (WIDTH - k)) & 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliced_and_bytewise_agree_at_every_length() {
        let data: Vec<u8> = (0..40u32).map(|i| (i * 97 + 13) as u8).collect();
        for len in 0..data.len() {
            let mut sliced = Crc6::new();
            sliced.bytes(&data[..len]);
            let mut bytewise = Crc6::new();
            for byte in &data[..len] {
                bytewise.bytes(std::slice::from_ref(byte));
            }
            assert_eq!(sliced, bytewise, "length {len}");
        }
    }

    #[test]
    fn bits_and_bytes_agree() {
        let data = [0xA5u8, 0x00, 0xFF, 0x3C, 0x81];
        let mut by_bytes = Crc6::new();
        by_bytes.bytes(&data);
        let mut by_bits = Crc6::new();
        for byte in data {
            for i in (0..8).rev() {
                by_bits.bit((byte >> i) & 1);
            }
        }
        assert_eq!(by_bytes, by_bits);
        let mut four = Crc4::new();
        four.bytes(&data);
        assert!(four.value() < 16);
    }

    #[test]
    fn a_message_followed_by_its_crc_leaves_zero() {
        // The defining property of M(x)·x^w mod G(x): appending the remainder divides exactly.
        let data = [0x12u8, 0x34, 0x56, 0x78, 0x9A];
        let mut crc = Crc6::new();
        crc.bytes(&data);
        let check = crc.value();
        for k in 1..=6 {
            crc.bit((check >> (6 - k)) & 1);
        }
        assert_eq!(crc.value(), 0);
    }
}

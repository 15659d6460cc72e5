//! Bit access in MSB-first byte streams (the first bit of the line in bit 7 of byte 0).

/// Bit `index` of `bytes` (0 or 1).
#[inline]
pub(crate) fn bit(bytes: &[u8], index: usize) -> u8 {
    (bytes[index >> 3] >> (7 - (index & 7))) & 1
}

/// The 8 bits starting at bit `index`, first bit in the MSB. Reads `bytes[index / 8 + 1]` only
/// when the octet straddles a byte boundary.
#[inline]
pub(crate) fn octet(bytes: &[u8], index: usize) -> u8 {
    let at = index >> 3;
    let shift = index & 7;
    if shift == 0 {
        bytes[at]
    } else {
        (bytes[at] << shift) | (bytes[at + 1] >> (8 - shift))
    }
}

/// Copies `out.len()` octets starting at bit `index`.
#[inline]
pub(crate) fn octets(bytes: &[u8], index: usize, out: &mut [u8]) {
    let at = index >> 3;
    let shift = (index & 7) as u32;
    let count = out.len();
    if shift == 0 {
        out.copy_from_slice(&bytes[at..at + count]);
    } else {
        let source = &bytes[at..at + count + 1];
        for (k, slot) in out.iter_mut().enumerate() {
            *slot = (source[k] << shift) | (source[k + 1] >> (8 - shift));
        }
    }
}

/// Packs bits MSB-first into bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitWriter {
    /// Complete bytes.
    pub(crate) out: Vec<u8>,
    /// The low `pending` bits are the start of the next byte.
    acc: u8,
    pending: u32,
}

impl BitWriter {
    /// Appends the low `count` bits of `bits` (`count <= 8`), the highest of them first.
    #[inline]
    pub(crate) fn push(&mut self, bits: u8, count: u32) {
        debug_assert!(count <= 8);
        if count == 0 {
            return;
        }
        let value = u16::from(bits) & ((1u16 << count) - 1);
        let combined = (u16::from(self.acc) << count) | value;
        let total = self.pending + count;
        if total >= 8 {
            self.out.push((combined >> (total - 8)) as u8);
            self.pending = total - 8;
            self.acc = (combined & ((1u16 << self.pending) - 1)) as u8;
        } else {
            self.pending = total;
            self.acc = combined as u8;
        }
    }

    /// Appends whole octets.
    #[inline]
    pub(crate) fn push_octets(&mut self, octets: &[u8]) {
        if self.pending == 0 {
            self.out.extend_from_slice(octets);
            return;
        }
        let Some(&last) = octets.last() else {
            return;
        };
        let shift = self.pending;
        let start = self.out.len();
        self.out.resize(start + octets.len(), 0);
        let out = &mut self.out[start..];
        // Each output byte takes the low bits of the octet before and the high bits of its
        // own: no carried state, so the loop vectorises.
        out[0] = (self.acc << (8 - shift)) | (octets[0] >> shift);
        for ((slot, &before), &octet) in out[1..].iter_mut().zip(octets).zip(&octets[1..]) {
            *slot = (before << (8 - shift)) | (octet >> shift);
        }
        self.acc = last & ((1u8 << shift) - 1);
    }

    /// Bits not yet forming a whole byte.
    #[cfg(test)]
    pub(crate) fn pending_bits(&self) -> u32 {
        self.pending
    }
}

/// Reads bits MSB-first from a queue of bytes that is topped up from the back.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitQueue {
    bytes: Vec<u8>,
    /// Bit position of the next unread bit.
    read: usize,
}

impl BitQueue {
    pub(crate) fn available_bits(&self) -> usize {
        self.bytes.len() * 8 - self.read
    }

    /// Drops what has been read and makes room for `extra` more bytes, returning the slice to
    /// fill.
    pub(crate) fn refill(&mut self, extra: usize) -> &mut [u8] {
        let consumed = self.read / 8;
        self.bytes.drain(..consumed);
        self.read -= consumed * 8;
        let start = self.bytes.len();
        self.bytes.resize(start + extra, 0);
        &mut self.bytes[start..]
    }

    /// The next `count` bits (`count <= 8`), first in the highest position.
    #[inline]
    pub(crate) fn take(&mut self, count: u32) -> u8 {
        let value = octet_padded(&self.bytes, self.read) >> (8 - count);
        self.read += count as usize;
        value
    }

    /// The next `out.len()` whole octets.
    #[inline]
    pub(crate) fn take_octets(&mut self, out: &mut [u8]) {
        if self.read & 7 == 0 || self.read / 8 + out.len() < self.bytes.len() {
            octets(&self.bytes, self.read, out);
        } else {
            for slot in out.iter_mut() {
                *slot = octet_padded(&self.bytes, self.read);
                self.read += 8;
            }
            return;
        }
        self.read += out.len() * 8;
    }
}

/// Like [`octet`], reading zeros past the end.
#[inline]
fn octet_padded(bytes: &[u8], index: usize) -> u8 {
    let at = index >> 3;
    let shift = index & 7;
    let first = bytes.get(at).copied().unwrap_or(0);
    if shift == 0 {
        first
    } else {
        let second = bytes.get(at + 1).copied().unwrap_or(0);
        (first << shift) | (second >> (8 - shift))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_packs_msb_first() {
        let mut writer = BitWriter::default();
        writer.push(1, 1);
        writer.push_octets(&[0xFF, 0x00]);
        writer.push(0b1010, 4);
        writer.push(0b101, 3);
        // 1 11111111 00000000 1010 101 -> 11111111 10000000 01010101
        assert_eq!(writer.out, [0xFF, 0x80, 0x55]);
        assert_eq!(writer.pending_bits(), 0);
    }

    #[test]
    fn reads_octets_at_any_offset() {
        let bytes = [0b1010_1100u8, 0b0101_0011, 0xF0];
        assert_eq!(octet(&bytes, 0), 0b1010_1100);
        assert_eq!(octet(&bytes, 3), 0b0110_0010);
        let mut out = [0u8; 2];
        octets(&bytes, 4, &mut out);
        assert_eq!(out, [0b1100_0101, 0b0011_1111]);
        assert_eq!(bit(&bytes, 0), 1);
        assert_eq!(bit(&bytes, 1), 0);
        assert_eq!(bit(&bytes, 15), 1);
    }

    #[test]
    fn queue_takes_bits_across_refills() {
        let mut queue = BitQueue::default();
        queue.refill(1).copy_from_slice(&[0b1100_1010]);
        assert_eq!(queue.take(3), 0b110);
        queue.refill(1).copy_from_slice(&[0b1111_0000]);
        assert_eq!(queue.take(7), 0b010_1011);
        assert_eq!(queue.available_bits(), 6);
        let mut out = [0u8; 1];
        queue.refill(1).copy_from_slice(&[0xAA]);
        queue.take_octets(&mut out);
        assert_eq!(out, [0b1100_0010]);
    }
}

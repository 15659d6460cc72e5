//! The Internet checksum (RFC 1071) and the IPv6 pseudo-header it covers for upper-layer
//! protocols (RFC 8200 section 8.1).

use std::net::Ipv6Addr;

/// The one's-complement of the one's-complement sum of the 16-bit big-endian words of the
/// concatenation of `chunks` (RFC 1071). Every chunk but the last must have even length (true
/// of a pseudo-header); an odd last byte is padded with zero on the right.
pub(crate) fn internet_checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    for chunk in chunks {
        let mut pairs = chunk.chunks_exact(2);
        for pair in &mut pairs {
            sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = pairs.remainder() {
            sum += u64::from(*last) << 8;
        }
        // Fold after every chunk; a 64-bit accumulator cannot overflow within one chunk.
        sum = (sum & 0xffff) + (sum >> 16);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Next-header value of ICMPv6 (IANA protocol numbers).
pub(crate) const NEXT_HEADER_ICMPV6: u8 = 58;

/// The IPv6 pseudo-header (RFC 8200 section 8.1): source, destination, upper-layer length,
/// three zero bytes, next header.
pub(crate) fn pseudo_header_v6(
    source: Ipv6Addr,
    destination: Ipv6Addr,
    upper_layer_length: u32,
    next_header: u8,
) -> [u8; 40] {
    let mut pseudo = [0u8; 40];
    pseudo[..16].copy_from_slice(&source.octets());
    pseudo[16..32].copy_from_slice(&destination.octets());
    pseudo[32..36].copy_from_slice(&upper_layer_length.to_be_bytes());
    pseudo[39] = next_header;
    pseudo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_section_3_example() {
        // The words 0001 f203 f4f5 f6f7 sum to ddf2; the checksum is its complement.
        assert_eq!(
            internet_checksum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
            0x220d
        );
        // Split anywhere on an even boundary, the sum is the same.
        assert_eq!(
            internet_checksum(&[&[0x00, 0x01], &[0xf2, 0x03, 0xf4, 0xf5], &[0xf6, 0xf7]]),
            0x220d
        );
    }

    #[test]
    fn an_odd_last_byte_is_padded_on_the_right() {
        assert_eq!(internet_checksum(&[&[0x01]]), !0x0100);
        assert_eq!(
            internet_checksum(&[&[0x12, 0x34], &[0x56]]),
            !(0x1234 + 0x5600)
        );
    }

    #[test]
    fn carries_fold_back_in() {
        // ffff + ffff = 1fffe -> fffe + 1 = ffff -> complement 0.
        assert_eq!(internet_checksum(&[&[0xff, 0xff, 0xff, 0xff]]), 0);
        // A long run of 0xff bytes cannot overflow.
        let long = vec![0xffu8; 1 << 20];
        assert_eq!(internet_checksum(&[&long]), 0);
    }
}

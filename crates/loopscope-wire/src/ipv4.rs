//! The IPv4 header a raw IPv4 socket delivers in front of every message (RFC 791 section 3.1):
//! only what a receiver of ICMP needs, the time to live and where the payload starts.

/// Why bytes are not an IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ipv4Error {
    #[error("{0} bytes is shorter than an IPv4 header")]
    /// Fewer bytes than the header needs (the count given).
    Truncated(usize),
    #[error("IP version {0}, not 4")]
    /// The version field is not 4 (the version given).
    NotIpv4(u8),
    #[error("IPv4 header length {0} bytes is below the minimum of 20")]
    /// The header length field is below 5 words (the length in bytes given).
    BadHeaderLength(usize),
}

/// Minimum IPv4 header length.
pub const MIN_HEADER_LEN: usize = 20;

/// A view of an IPv4 packet in `buffer`.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` after checking it holds a whole header of the length the header claims.
    pub fn new_checked(buffer: T) -> Result<Self, Ipv4Error> {
        let bytes = buffer.as_ref();
        let first = *bytes.first().ok_or(Ipv4Error::Truncated(0))?;
        if first >> 4 != 4 {
            return Err(Ipv4Error::NotIpv4(first >> 4));
        }
        let header_len = usize::from(first & 0x0f) * 4;
        if header_len < MIN_HEADER_LEN {
            return Err(Ipv4Error::BadHeaderLength(header_len));
        }
        if bytes.len() < header_len {
            return Err(Ipv4Error::Truncated(bytes.len()));
        }
        Ok(Ipv4Packet { buffer })
    }

    /// Header length in bytes (IHL x 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[0] & 0x0f) * 4
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[8]
    }

    /// Protocol number of the payload (1 for ICMP).
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[9]
    }

    /// Everything after the header (what the socket delivered, not the total-length field's
    /// view: a raw socket hands over exactly one datagram).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ttl_and_payload_past_options() {
        let mut packet = vec![0x46u8, 0, 0, 28, 0, 0, 0, 0, 63, 1];
        packet.resize(24, 0); // 4 bytes of options
        packet.extend_from_slice(b"icmp");
        let view = Ipv4Packet::new_checked(&packet[..]).unwrap();
        assert_eq!((view.ttl(), view.protocol()), (63, 1));
        assert_eq!(view.payload(), b"icmp");
    }

    #[test]
    fn rejects_what_is_not_a_whole_ipv4_header() {
        assert_eq!(
            Ipv4Packet::new_checked(&[][..]).unwrap_err(),
            Ipv4Error::Truncated(0)
        );
        assert_eq!(
            Ipv4Packet::new_checked(&[0x45, 0, 0][..]).unwrap_err(),
            Ipv4Error::Truncated(3)
        );
        assert_eq!(
            Ipv4Packet::new_checked(&[0x60; 40][..]).unwrap_err(),
            Ipv4Error::NotIpv4(6)
        );
        assert_eq!(
            Ipv4Packet::new_checked(&[0x44; 40][..]).unwrap_err(),
            Ipv4Error::BadHeaderLength(16)
        );
    }
}

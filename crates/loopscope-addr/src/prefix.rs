//! CIDR prefixes over plain integers, so that matching is a shift and a compare.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// An IPv4 or IPv6 prefix such as `127.0.0.0/8` or `64:ff9b:1::/48`. Host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// An IPv4 block.
    V4 {
        /// The first address's 32 bits (host bits zero).
        bits: u32,
        /// The prefix length, 0 to 32.
        len: u8,
    },
    /// An IPv6 block.
    V6 {
        /// The first address's 128 bits (host bits zero).
        bits: u128,
        /// The prefix length, 0 to 128.
        len: u8,
    },
}

/// Why a prefix did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// Not `ADDRESS/LENGTH`.
    #[error("'{0}' is not an address/length prefix (e.g. 10.0.0.0/8, fc00::/7)")]
    Syntax(String),
    #[error("prefix length {len} is too long for {family} (at most {max})")]
    /// A length longer than the family's addresses.
    Length {
        /// The length given.
        len: u32,
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The longest there is (32 or 128).
        max: u8,
    },
}

impl Prefix {
    /// `a.b.c.d/len`; host bits are cleared.
    pub const fn v4(octets: [u8; 4], len: u8) -> Prefix {
        let bits = u32::from_be_bytes(octets);
        Prefix::V4 {
            bits: bits & mask32(len),
            len,
        }
    }

    /// An IPv6 prefix from its eight 16-bit groups; host bits are cleared.
    pub const fn v6(segments: [u16; 8], len: u8) -> Prefix {
        let mut bits: u128 = 0;
        let mut index = 0;
        while index < 8 {
            bits = (bits << 16) | segments[index] as u128;
            index += 1;
        }
        Prefix::V6 {
            bits: bits & mask128(len),
            len,
        }
    }

    /// The prefix of `len` bits containing `ip`.
    pub fn new(ip: IpAddr, len: u8) -> Result<Prefix, PrefixError> {
        match ip {
            IpAddr::V4(v4) if len <= 32 => Ok(Prefix::v4(v4.octets(), len)),
            IpAddr::V6(v6) if len <= 128 => Ok(Prefix::v6(v6.segments(), len)),
            IpAddr::V4(_) => Err(PrefixError::Length {
                len: len.into(),
                family: "IPv4",
                max: 32,
            }),
            IpAddr::V6(_) => Err(PrefixError::Length {
                len: len.into(),
                family: "IPv6",
                max: 128,
            }),
        }
    }

    /// The prefix length in bits.
    pub fn len(&self) -> u8 {
        match *self {
            Prefix::V4 { len, .. } | Prefix::V6 { len, .. } => len,
        }
    }

    /// Never true: a /0 still holds every address. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The first address of the block.
    pub fn first(&self) -> IpAddr {
        match *self {
            Prefix::V4 { bits, .. } => IpAddr::V4(Ipv4Addr::from_bits(bits)),
            Prefix::V6 { bits, .. } => IpAddr::V6(Ipv6Addr::from_bits(bits)),
        }
    }

    /// The last address of the block.
    pub fn last(&self) -> IpAddr {
        match *self {
            Prefix::V4 { bits, len } => IpAddr::V4(Ipv4Addr::from_bits(bits | !mask32(len))),
            Prefix::V6 { bits, len } => IpAddr::V6(Ipv6Addr::from_bits(bits | !mask128(len))),
        }
    }

    /// Whether `ip` is in the block (an address of the other family never is).
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (Prefix::V4 { bits, len }, IpAddr::V4(v4)) => v4.to_bits() & mask32(len) == bits,
            (Prefix::V6 { bits, len }, IpAddr::V6(v6)) => v6.to_bits() & mask128(len) == bits,
            _ => false,
        }
    }

    /// Whether the IPv4 address `ip` (as its 32 bits) is in the block: the scan's hot path.
    #[inline]
    pub fn contains_v4(&self, ip: u32) -> bool {
        matches!(*self, Prefix::V4 { bits, len } if ip & mask32(len) == bits)
    }

    /// Whether the IPv6 address `ip` (as its 128 bits) is in the block.
    #[inline]
    pub fn contains_v6(&self, ip: u128) -> bool {
        matches!(*self, Prefix::V6 { bits, len } if ip & mask128(len) == bits)
    }
}

#[inline]
const fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else if len >= 32 {
        u32::MAX
    } else {
        u32::MAX << (32 - len)
    }
}

#[inline]
const fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else if len >= 128 {
        u128::MAX
    } else {
        u128::MAX << (128 - len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.first(), self.len())
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    /// `ADDR/LEN`, or a bare address meaning a single host (/32 or /128).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || PrefixError::Syntax(text.to_string());
        let (address, len) = match text.split_once('/') {
            Some((address, len)) => {
                let len: u32 = len.parse().map_err(|_| syntax())?;
                (address, Some(len))
            }
            None => (text, None),
        };
        let ip: IpAddr = address.parse().map_err(|_| syntax())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(PrefixError::Length {
                len,
                family: if ip.is_ipv4() { "IPv4" } else { "IPv6" },
                max: max as u8,
            });
        }
        Prefix::new(ip, len as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_by_hand() {
        let p: Prefix = "64:ff9b:1::/48".parse().unwrap();
        assert_eq!(p.first().to_string(), "64:ff9b:1::");
        assert_eq!(p.last().to_string(), "64:ff9b:1:ffff:ffff:ffff:ffff:ffff");
        let p: Prefix = "100.64.0.0/10".parse().unwrap();
        assert_eq!(p.last().to_string(), "100.127.255.255");
        assert!(p.contains("100.127.255.255".parse().unwrap()));
        assert!(!p.contains("100.128.0.0".parse().unwrap()));
        assert!(!p.contains("::ffff:100.64.0.1".parse().unwrap()));
        let all: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("255.1.2.3".parse().unwrap()));
        assert_eq!(
            "10.1.2.3/8".parse::<Prefix>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("::1".parse::<Prefix>().unwrap().to_string(), "::1/128");
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
        assert!("fc00::/129".parse::<Prefix>().is_err());
        assert!("nonsense/8".parse::<Prefix>().is_err());
    }
}

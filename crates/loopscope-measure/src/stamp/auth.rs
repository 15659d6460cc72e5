//! STAMP authenticated mode (RFC 8762 §4.4): HMAC-SHA-256 truncated to its first 128 bits,
//! over the first 96 octets of the base packet (everything before the HMAC field). How the two
//! ends share the key is outside RFC 8762; here both read it from a file.

use std::path::Path;

use hmac::{Hmac, Mac};
use loopscope_wire::stamp::{AUTH_HMAC_COVERS, HMAC_LEN, MIN_AUTH_PACKET_LEN};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read.
    #[error("cannot read the key file {path}: {source}")]
    Read {
        /// The file named.
        path: String,
        /// What the read said.
        source: std::io::Error,
    },
    /// The file holds no key.
    #[error("the key file {0} is empty")]
    Empty(String),
    /// Longer than a key file should be (1 MiB).
    #[error("the key file {0} is larger than 1 MiB")]
    TooLarge(String),
}

/// A shared key for STAMP's HMAC.
#[derive(Clone)]
pub struct StampKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for StampKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StampKey({} octets)", self.key.len())
    }
}

impl StampKey {
    /// The key is the file's bytes, less one trailing line end (`\n` or `\r\n`), so a key
    /// written with `echo` and one written with `printf` are the same key.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let name = path.display().to_string();
        let bytes = loopscope_report::read_bounded(path, 1 << 20).map_err(|error| match error {
            loopscope_report::BoundedReadError::TooLarge { .. } => KeyError::TooLarge(name.clone()),
            loopscope_report::BoundedReadError::Io { source, .. } => KeyError::Read {
                path: name.clone(),
                source,
            },
            other => KeyError::Read {
                path: name.clone(),
                source: std::io::Error::other(other.to_string()),
            },
        })?;
        let mut key = bytes;
        if key.ends_with(b"\n") {
            key.pop();
            if key.ends_with(b"\r") {
                key.pop();
            }
        }
        if key.is_empty() {
            return Err(KeyError::Empty(name));
        }
        Ok(StampKey { key })
    }

    /// A key from bytes.
    pub fn new(key: &[u8]) -> Self {
        StampKey { key: key.to_vec() }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length (RFC 2104 §2); new_from_slice cannot fail for it.
        match HmacSha256::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        }
    }

    /// The truncated HMAC of `covered`.
    pub fn tag(&self, covered: &[u8]) -> [u8; HMAC_LEN] {
        self.tag_parts(&[covered])
    }

    /// The truncated HMAC of the concatenation of `parts`.
    pub fn tag_parts(&self, parts: &[&[u8]]) -> [u8; HMAC_LEN] {
        let mut mac = self.mac();
        for part in parts {
            mac.update(part);
        }
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; HMAC_LEN];
        tag.copy_from_slice(&full[..HMAC_LEN]);
        tag
    }

    /// Writes the HMAC of an authenticated packet (at least 112 octets) into its HMAC field.
    pub fn sign(&self, packet: &mut [u8]) {
        if packet.len() < MIN_AUTH_PACKET_LEN {
            return;
        }
        let tag = self.tag(&packet[..AUTH_HMAC_COVERS]);
        packet[AUTH_HMAC_COVERS..MIN_AUTH_PACKET_LEN].copy_from_slice(&tag);
    }

    /// Whether an authenticated packet's HMAC field is right (compared in constant time).
    pub fn verify(&self, packet: &[u8]) -> bool {
        if packet.len() < MIN_AUTH_PACKET_LEN {
            return false;
        }
        let mut mac = self.mac();
        mac.update(&packet[..AUTH_HMAC_COVERS]);
        mac.verify_truncated_left(&packet[AUTH_HMAC_COVERS..MIN_AUTH_PACKET_LEN])
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 ("Jefe", "what do ya want for nothing?"), HMAC-SHA-256's first
    /// 128 bits: 5bdcc146bf60754e6a042426089575c7.
    #[test]
    fn rfc4231_known_answer_truncated() {
        let key = StampKey::new(b"Jefe");
        assert_eq!(
            key.tag(b"what do ya want for nothing?"),
            [
                0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
                0x75, 0xc7
            ]
        );
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let key = StampKey::new(b"secret");
        let mut packet = vec![7u8; 112];
        key.sign(&mut packet);
        assert!(key.verify(&packet));
        assert!(!StampKey::new(b"other").verify(&packet));
        packet[5] ^= 1;
        assert!(!key.verify(&packet));
        assert!(!key.verify(&packet[..111]));
    }

    #[test]
    fn key_file_loses_one_line_end() {
        let dir = std::env::temp_dir().join(format!("loopscope-stamp-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, b"abc\r\n").unwrap();
        assert_eq!(StampKey::from_file(&path).unwrap().key, b"abc");
        std::fs::write(&path, b"\n").unwrap();
        assert!(matches!(
            StampKey::from_file(&path),
            Err(KeyError::Empty(_))
        ));
        assert!(matches!(
            StampKey::from_file(&dir.join("missing")),
            Err(KeyError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

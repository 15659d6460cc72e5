//! BFD (RFC 5880): the Control packet with its optional Authentication Section, and the echo
//! packet loopscope sends on the echo port.
//!
//! ```text
//!  0                   1                   2                   3
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! |   Auth Type   |   Auth Len    |    Authentication Data...     |
//! ```
//!
//! [`ControlRepr::parse`] applies every check of RFC 5880 §6.8.6 that needs only the packet
//! (version, lengths, Detect Mult, the Multipoint bit, the discriminators); what needs a
//! session (which discriminator is ours, the key, the sequence number window) is the
//! session's. The digests of RFC 5880 §6.7.3 and §6.7.4 are computed by [`sign`] and checked
//! by [`verify`] with the RustCrypto `md-5` and `sha1` crates.

use md5::Md5;
use sha1::{Digest, Sha1};

/// Single-hop BFD Control packets (RFC 5881 §4).
pub const CONTROL_PORT: u16 = 3784;
/// Single-hop BFD Echo packets (RFC 5881 §4).
pub const ECHO_PORT: u16 = 3785;
/// Multihop BFD Control packets (RFC 5883 §5).
pub const MULTIHOP_PORT: u16 = 4784;
/// Seamless BFD reflectors listen here (RFC 7881 §3).
pub const SBFD_PORT: u16 = 7784;
/// The BFD protocol version (RFC 5880 §4.1).
pub const VERSION: u8 = 1;
/// A Control packet without an Authentication Section.
pub const HEADER_LEN: usize = 24;
/// The longest Control packet: the header and a keyed SHA-1 section (28 octets).
pub const MAX_CONTROL_LEN: usize = HEADER_LEN + 28;
/// The TTL or hop limit single-hop packets are sent with and must arrive with (RFC 5881 §5,
/// the GTSM rule of RFC 5082).
pub const SINGLE_HOP_TTL: u8 = 255;

/// Why bytes are not an acceptable BFD Control packet (RFC 5880 §6.8.6, packet-level checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BfdError {
    /// Fewer bytes than the packet says, or than a header.
    #[error("{got} octets received, the packet needs {need}")]
    Truncated {
        /// Octets present.
        got: usize,
        /// Octets the header or the Length field asks for.
        need: usize,
    },
    /// Version field other than 1.
    #[error("BFD version {0}, not 1")]
    Version(u8),
    /// The Length field is below the minimum (26 with the A bit), or not 24 without it.
    #[error("Length field {0} does not fit the packet")]
    Length(u8),
    /// Detect Mult of zero.
    #[error("Detect Mult is zero")]
    ZeroDetectMult,
    /// The Multipoint bit is set.
    #[error("the Multipoint bit is set")]
    Multipoint,
    /// My Discriminator is zero.
    #[error("My Discriminator is zero")]
    ZeroMyDiscriminator,
    /// Your Discriminator is zero while the state is Init or Up.
    #[error("Your Discriminator is zero in state {0}")]
    ZeroYourDiscriminator(State),
    /// The Authentication Section's type is not one RFC 5880 defines.
    #[error("authentication type {0} is unknown")]
    AuthType(u8),
    /// The Authentication Section's length does not fit its type or the packet.
    #[error("authentication section length {0} is wrong for its type or the packet")]
    AuthLength(u8),
    /// A key longer than its type allows, or an empty one.
    #[error("a {kind} key is 1..={max} octets, not {len}")]
    KeyLength {
        /// The authentication type.
        kind: AuthType,
        /// The key's length.
        len: usize,
        /// The type's limit.
        max: usize,
    },
    /// The buffer given to emit is smaller than the packet.
    #[error("buffer of {got} octets is smaller than the {need}-octet packet")]
    Buffer {
        /// Octets in the buffer.
        got: usize,
        /// Octets the packet needs.
        need: usize,
    },
}

/// Session state (RFC 5880 §4.1, the Sta field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// 0
    AdminDown,
    /// 1
    Down,
    /// 2
    Init,
    /// 3
    Up,
}

impl State {
    /// The two-bit field value.
    pub fn code(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }

    /// The state of a two-bit field (the upper bits are ignored).
    pub fn from_code(code: u8) -> Self {
        match code & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        })
    }
}

/// The diagnostic codes of RFC 5880 §4.1 (values 9..=31 are reserved and kept as they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diagnostic {
    /// 0 No Diagnostic
    None,
    /// 1 Control Detection Time Expired
    ControlDetectionTimeExpired,
    /// 2 Echo Function Failed
    EchoFunctionFailed,
    /// 3 Neighbor Signaled Session Down
    NeighborSignaledSessionDown,
    /// 4 Forwarding Plane Reset
    ForwardingPlaneReset,
    /// 5 Path Down
    PathDown,
    /// 6 Concatenated Path Down
    ConcatenatedPathDown,
    /// 7 Administratively Down
    AdministrativelyDown,
    /// 8 Reverse Concatenated Path Down
    ReverseConcatenatedPathDown,
    /// 9..=31, reserved
    Reserved(u8),
}

impl Diagnostic {
    /// The five-bit field value.
    pub fn code(self) -> u8 {
        match self {
            Diagnostic::None => 0,
            Diagnostic::ControlDetectionTimeExpired => 1,
            Diagnostic::EchoFunctionFailed => 2,
            Diagnostic::NeighborSignaledSessionDown => 3,
            Diagnostic::ForwardingPlaneReset => 4,
            Diagnostic::PathDown => 5,
            Diagnostic::ConcatenatedPathDown => 6,
            Diagnostic::AdministrativelyDown => 7,
            Diagnostic::ReverseConcatenatedPathDown => 8,
            Diagnostic::Reserved(code) => code & 0x1f,
        }
    }

    /// The diagnostic of a five-bit field (the upper bits are ignored).
    pub fn from_code(code: u8) -> Self {
        match code & 0x1f {
            0 => Diagnostic::None,
            1 => Diagnostic::ControlDetectionTimeExpired,
            2 => Diagnostic::EchoFunctionFailed,
            3 => Diagnostic::NeighborSignaledSessionDown,
            4 => Diagnostic::ForwardingPlaneReset,
            5 => Diagnostic::PathDown,
            6 => Diagnostic::ConcatenatedPathDown,
            7 => Diagnostic::AdministrativelyDown,
            8 => Diagnostic::ReverseConcatenatedPathDown,
            other => Diagnostic::Reserved(other),
        }
    }

    /// RFC 5880's name for the code.
    pub fn name(self) -> &'static str {
        match self {
            Diagnostic::None => "No Diagnostic",
            Diagnostic::ControlDetectionTimeExpired => "Control Detection Time Expired",
            Diagnostic::EchoFunctionFailed => "Echo Function Failed",
            Diagnostic::NeighborSignaledSessionDown => "Neighbor Signaled Session Down",
            Diagnostic::ForwardingPlaneReset => "Forwarding Plane Reset",
            Diagnostic::PathDown => "Path Down",
            Diagnostic::ConcatenatedPathDown => "Concatenated Path Down",
            Diagnostic::AdministrativelyDown => "Administratively Down",
            Diagnostic::ReverseConcatenatedPathDown => "Reverse Concatenated Path Down",
            Diagnostic::Reserved(_) => "Reserved",
        }
    }
}

/// Authentication types (RFC 5880 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthType {
    /// 1 Simple Password
    SimplePassword,
    /// 2 Keyed MD5
    KeyedMd5,
    /// 3 Meticulous Keyed MD5
    MeticulousKeyedMd5,
    /// 4 Keyed SHA1
    KeyedSha1,
    /// 5 Meticulous Keyed SHA1
    MeticulousKeyedSha1,
}

impl AuthType {
    /// The Auth Type field value.
    pub fn code(self) -> u8 {
        match self {
            AuthType::SimplePassword => 1,
            AuthType::KeyedMd5 => 2,
            AuthType::MeticulousKeyedMd5 => 3,
            AuthType::KeyedSha1 => 4,
            AuthType::MeticulousKeyedSha1 => 5,
        }
    }

    /// The type of an Auth Type field value.
    pub fn from_code(code: u8) -> Result<Self, BfdError> {
        Ok(match code {
            1 => AuthType::SimplePassword,
            2 => AuthType::KeyedMd5,
            3 => AuthType::MeticulousKeyedMd5,
            4 => AuthType::KeyedSha1,
            5 => AuthType::MeticulousKeyedSha1,
            other => return Err(BfdError::AuthType(other)),
        })
    }

    /// The octets of the Auth Key/Digest (or Hash) field; for a password, its longest length.
    pub fn key_field_len(self) -> usize {
        match self {
            AuthType::SimplePassword | AuthType::KeyedMd5 | AuthType::MeticulousKeyedMd5 => 16,
            AuthType::KeyedSha1 | AuthType::MeticulousKeyedSha1 => 20,
        }
    }

    /// Whether the sequence number advances with every packet (RFC 5880 §6.7.3, §6.7.4).
    pub fn is_meticulous(self) -> bool {
        matches!(
            self,
            AuthType::MeticulousKeyedMd5 | AuthType::MeticulousKeyedSha1
        )
    }

    /// Whether the section carries a sequence number and a digest.
    pub fn is_keyed(self) -> bool {
        self != AuthType::SimplePassword
    }

    /// The Auth Len of a section of this type (for a password, with a password of `key_len`).
    pub fn section_len(self, key_len: usize) -> usize {
        match self {
            AuthType::SimplePassword => 3 + key_len,
            _ => 8 + self.key_field_len(),
        }
    }

    /// Checks that `key` has a length this type allows.
    pub fn check_key(self, key: &[u8]) -> Result<(), BfdError> {
        let max = self.key_field_len();
        if key.is_empty() || key.len() > max {
            return Err(BfdError::KeyLength {
                kind: self,
                len: key.len(),
                max,
            });
        }
        Ok(())
    }

    /// The lower-case name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AuthType::SimplePassword => "simple",
            AuthType::KeyedMd5 => "md5",
            AuthType::MeticulousKeyedMd5 => "meticulous-md5",
            AuthType::KeyedSha1 => "sha1",
            AuthType::MeticulousKeyedSha1 => "meticulous-sha1",
        }
    }
}

impl std::fmt::Display for AuthType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An Authentication Section, parsed. For a password, `data` holds the password; for the keyed
/// types, the digest as received (or zeros before [`sign`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthRepr {
    /// The type.
    pub auth_type: AuthType,
    /// Auth Key ID.
    pub key_id: u8,
    /// The sequence number (zero for a password, which has none).
    pub sequence: u32,
    data: [u8; 20],
    data_len: u8,
}

impl AuthRepr {
    /// A password section (the password must be 1..=16 octets).
    pub fn password(key_id: u8, password: &[u8]) -> Result<Self, BfdError> {
        AuthType::SimplePassword.check_key(password)?;
        let mut data = [0u8; 20];
        data[..password.len()].copy_from_slice(password);
        Ok(AuthRepr {
            auth_type: AuthType::SimplePassword,
            key_id,
            sequence: 0,
            data,
            data_len: password.len() as u8,
        })
    }

    /// A keyed section whose digest [`sign`] fills in after emission.
    pub fn keyed(auth_type: AuthType, key_id: u8, sequence: u32) -> Self {
        AuthRepr {
            auth_type,
            key_id,
            sequence,
            data: [0; 20],
            data_len: auth_type.key_field_len() as u8,
        }
    }

    /// The password, or the digest field.
    pub fn data(&self) -> &[u8] {
        &self.data[..usize::from(self.data_len)]
    }

    /// The Auth Len field.
    pub fn len(&self) -> usize {
        self.auth_type.section_len(usize::from(self.data_len))
    }

    /// Never true: a section holds at least its type, length and key ID.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn parse(section: &[u8]) -> Result<Self, BfdError> {
        // The caller guarantees at least the two octets of type and length.
        let auth_type = AuthType::from_code(section[0])?;
        let auth_len = section[1];
        let len = usize::from(auth_len);
        if len > section.len() {
            return Err(BfdError::AuthLength(auth_len));
        }
        match auth_type {
            AuthType::SimplePassword => {
                if !(4..=19).contains(&len) {
                    return Err(BfdError::AuthLength(auth_len));
                }
                let password = &section[3..len];
                let mut data = [0u8; 20];
                data[..password.len()].copy_from_slice(password);
                Ok(AuthRepr {
                    auth_type,
                    key_id: section[2],
                    sequence: 0,
                    data,
                    data_len: password.len() as u8,
                })
            }
            keyed => {
                if len != keyed.section_len(0) {
                    return Err(BfdError::AuthLength(auth_len));
                }
                let digest_len = keyed.key_field_len();
                let mut data = [0u8; 20];
                data[..digest_len].copy_from_slice(&section[8..8 + digest_len]);
                Ok(AuthRepr {
                    auth_type,
                    key_id: section[2],
                    sequence: u32::from_be_bytes([section[4], section[5], section[6], section[7]]),
                    data,
                    data_len: digest_len as u8,
                })
            }
        }
    }

    fn emit(&self, section: &mut [u8]) {
        section[0] = self.auth_type.code();
        section[1] = self.len() as u8;
        section[2] = self.key_id;
        if self.auth_type.is_keyed() {
            section[3] = 0;
            section[4..8].copy_from_slice(&self.sequence.to_be_bytes());
            section[8..8 + self.data().len()].copy_from_slice(self.data());
        } else {
            section[3..3 + self.data().len()].copy_from_slice(self.data());
        }
    }
}

/// A zero-copy view of a BFD Control packet. Accessors read fixed offsets; construct it with
/// [`ControlPacket::new_checked`], which guarantees the header and the Length field fit.
#[derive(Debug, Clone, Copy)]
pub struct ControlPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ControlPacket<T> {
    /// Wraps `buffer` after checking that it holds a header and as many octets as the Length
    /// field says (RFC 5880 §6.8.6: a Length beyond the payload is discarded).
    pub fn new_checked(buffer: T) -> Result<Self, BfdError> {
        let bytes = buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Err(BfdError::Truncated {
                got: bytes.len(),
                need: HEADER_LEN,
            });
        }
        let length = usize::from(bytes[3]);
        if length > bytes.len() {
            return Err(BfdError::Truncated {
                got: bytes.len(),
                need: length,
            });
        }
        Ok(ControlPacket { buffer })
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn word(&self, offset: usize) -> u32 {
        let b = self.bytes();
        u32::from_be_bytes([b[offset], b[offset + 1], b[offset + 2], b[offset + 3]])
    }

    /// Vers.
    pub fn version(&self) -> u8 {
        self.bytes()[0] >> 5
    }
    /// Diag.
    pub fn diagnostic(&self) -> Diagnostic {
        Diagnostic::from_code(self.bytes()[0])
    }
    /// Sta.
    pub fn state(&self) -> State {
        State::from_code(self.bytes()[1] >> 6)
    }
    /// P, F, C, A, D, M as the six low bits of the second octet.
    pub fn flags(&self) -> u8 {
        self.bytes()[1] & 0x3f
    }
    /// Detect Mult.
    pub fn detect_mult(&self) -> u8 {
        self.bytes()[2]
    }
    /// Length.
    pub fn length(&self) -> u8 {
        self.bytes()[3]
    }
    /// My Discriminator.
    pub fn my_discriminator(&self) -> u32 {
        self.word(4)
    }
    /// Your Discriminator.
    pub fn your_discriminator(&self) -> u32 {
        self.word(8)
    }
    /// Desired Min TX Interval, microseconds.
    pub fn desired_min_tx_us(&self) -> u32 {
        self.word(12)
    }
    /// Required Min RX Interval, microseconds.
    pub fn required_min_rx_us(&self) -> u32 {
        self.word(16)
    }
    /// Required Min Echo RX Interval, microseconds.
    pub fn required_min_echo_rx_us(&self) -> u32 {
        self.word(20)
    }
    /// The packet as its Length field delimits it (trailing octets of the datagram excluded).
    pub fn packet(&self) -> &[u8] {
        &self.bytes()[..usize::from(self.length()).max(HEADER_LEN)]
    }
}

const FLAG_POLL: u8 = 0x20;
const FLAG_FINAL: u8 = 0x10;
const FLAG_CPI: u8 = 0x08;
const FLAG_AUTH: u8 = 0x04;
const FLAG_DEMAND: u8 = 0x02;
const FLAG_MULTIPOINT: u8 = 0x01;

/// A BFD Control packet, parsed and checked (RFC 5880 §4.1, §6.8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRepr {
    /// Diag.
    pub diagnostic: Diagnostic,
    /// Sta.
    pub state: State,
    /// P: a Poll Sequence asks for a Final.
    pub poll: bool,
    /// F: the answer to a Poll.
    pub final_: bool,
    /// C: Control Plane Independent.
    pub control_plane_independent: bool,
    /// D: the sender wants to run Demand mode.
    pub demand: bool,
    /// Detect Mult.
    pub detect_mult: u8,
    /// My Discriminator.
    pub my_discriminator: u32,
    /// Your Discriminator.
    pub your_discriminator: u32,
    /// Desired Min TX Interval, microseconds.
    pub desired_min_tx_us: u32,
    /// Required Min RX Interval, microseconds.
    pub required_min_rx_us: u32,
    /// Required Min Echo RX Interval, microseconds.
    pub required_min_echo_rx_us: u32,
    /// The Authentication Section, when the A bit is set.
    pub auth: Option<AuthRepr>,
}

impl ControlRepr {
    /// Parses a checked view, applying RFC 5880 §6.8.6's packet-level rules in its order.
    pub fn parse<T: AsRef<[u8]>>(packet: &ControlPacket<T>) -> Result<Self, BfdError> {
        if packet.version() != VERSION {
            return Err(BfdError::Version(packet.version()));
        }
        let flags = packet.flags();
        let auth_present = flags & FLAG_AUTH != 0;
        let minimum = if auth_present { 26 } else { 24 };
        // Without an Authentication Section nothing may follow the header: a Length above 24
        // would leave octets that mean nothing, so it is refused as a bad length too.
        let length = usize::from(packet.length());
        if length < minimum || (!auth_present && length != HEADER_LEN) {
            return Err(BfdError::Length(packet.length()));
        }
        if packet.detect_mult() == 0 {
            return Err(BfdError::ZeroDetectMult);
        }
        if flags & FLAG_MULTIPOINT != 0 {
            return Err(BfdError::Multipoint);
        }
        if packet.my_discriminator() == 0 {
            return Err(BfdError::ZeroMyDiscriminator);
        }
        let state = packet.state();
        if packet.your_discriminator() == 0 && matches!(state, State::Init | State::Up) {
            return Err(BfdError::ZeroYourDiscriminator(state));
        }
        let auth = if auth_present {
            let section = &packet.packet()[HEADER_LEN..];
            let parsed = AuthRepr::parse(section)?;
            // The section must end where the packet ends.
            if parsed.len() != section.len() {
                return Err(BfdError::AuthLength(section[1]));
            }
            Some(parsed)
        } else {
            None
        };
        Ok(ControlRepr {
            diagnostic: packet.diagnostic(),
            state,
            poll: flags & FLAG_POLL != 0,
            final_: flags & FLAG_FINAL != 0,
            control_plane_independent: flags & FLAG_CPI != 0,
            demand: flags & FLAG_DEMAND != 0,
            detect_mult: packet.detect_mult(),
            my_discriminator: packet.my_discriminator(),
            your_discriminator: packet.your_discriminator(),
            desired_min_tx_us: packet.desired_min_tx_us(),
            required_min_rx_us: packet.required_min_rx_us(),
            required_min_echo_rx_us: packet.required_min_echo_rx_us(),
            auth,
        })
    }

    /// Checks and parses a datagram in one step.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, BfdError> {
        ControlRepr::parse(&ControlPacket::new_checked(bytes)?)
    }

    /// The packet's length: the header and the Authentication Section.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.auth.map_or(0, |auth| auth.len())
    }

    /// Writes the packet into the start of `buffer` and returns its length. A keyed section is
    /// written with the digest it holds; [`sign`] computes the real one afterwards.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<usize, BfdError> {
        let len = self.buffer_len();
        if buffer.len() < len {
            return Err(BfdError::Buffer {
                got: buffer.len(),
                need: len,
            });
        }
        let mut flags = 0;
        for (set, bit) in [
            (self.poll, FLAG_POLL),
            (self.final_, FLAG_FINAL),
            (self.control_plane_independent, FLAG_CPI),
            (self.auth.is_some(), FLAG_AUTH),
            (self.demand, FLAG_DEMAND),
        ] {
            if set {
                flags |= bit;
            }
        }
        buffer[0] = (VERSION << 5) | self.diagnostic.code();
        buffer[1] = (self.state.code() << 6) | flags;
        buffer[2] = self.detect_mult;
        buffer[3] = len as u8;
        buffer[4..8].copy_from_slice(&self.my_discriminator.to_be_bytes());
        buffer[8..12].copy_from_slice(&self.your_discriminator.to_be_bytes());
        buffer[12..16].copy_from_slice(&self.desired_min_tx_us.to_be_bytes());
        buffer[16..20].copy_from_slice(&self.required_min_rx_us.to_be_bytes());
        buffer[20..24].copy_from_slice(&self.required_min_echo_rx_us.to_be_bytes());
        if let Some(auth) = &self.auth {
            auth.emit(&mut buffer[HEADER_LEN..len]);
        }
        Ok(len)
    }
}

/// The digest of a keyed packet: the Auth Key/Digest field holds the key padded with zeros
/// while the whole packet is hashed (RFC 5880 §6.7.3, §6.7.4).
fn digest(packet: &[u8], auth_type: AuthType, key: &[u8], out: &mut [u8; 20]) -> usize {
    let field_len = auth_type.key_field_len();
    let mut copy = [0u8; MAX_CONTROL_LEN];
    let len = packet.len().min(MAX_CONTROL_LEN);
    copy[..len].copy_from_slice(&packet[..len]);
    let field = HEADER_LEN + 8;
    copy[field..field + field_len].fill(0);
    let key_len = key.len().min(field_len);
    copy[field..field + key_len].copy_from_slice(&key[..key_len]);
    match auth_type {
        AuthType::KeyedSha1 | AuthType::MeticulousKeyedSha1 => {
            out.copy_from_slice(&Sha1::digest(&copy[..len]));
        }
        _ => out[..16].copy_from_slice(&Md5::digest(&copy[..len])),
    }
    field_len
}

/// Fills in the digest of an emitted keyed packet (`packet` is exactly the packet, as
/// [`ControlRepr::emit`] returned its length). Password packets are left as they are.
pub fn sign(packet: &mut [u8], key: &[u8]) -> Result<(), BfdError> {
    let repr = ControlRepr::parse_bytes(packet)?;
    let Some(auth) = repr.auth else {
        return Ok(());
    };
    if !auth.auth_type.is_keyed() {
        return Ok(());
    }
    auth.auth_type.check_key(key)?;
    let mut out = [0u8; 20];
    let len = digest(&packet[..repr.buffer_len()], auth.auth_type, key, &mut out);
    packet[HEADER_LEN + 8..HEADER_LEN + 8 + len].copy_from_slice(&out[..len]);
    Ok(())
}

/// Whether a parsed packet's Authentication Section is right for `key` (the password matches,
/// or the digest does). `packet` is the packet's octets as received. The sequence-number
/// window is the session's business.
pub fn verify(packet: &[u8], repr: &ControlRepr, key: &[u8]) -> bool {
    let Some(auth) = repr.auth else {
        return false;
    };
    if !auth.auth_type.is_keyed() {
        return auth.data() == key;
    }
    if key.is_empty() || key.len() > auth.auth_type.key_field_len() {
        return false;
    }
    let len = repr.buffer_len();
    if packet.len() < len {
        return false;
    }
    let mut out = [0u8; 20];
    let digest_len = digest(&packet[..len], auth.auth_type, key, &mut out);
    // Every octet is compared, so the time taken does not say where a forged digest differs.
    let difference = out[..digest_len]
        .iter()
        .zip(auth.data())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    difference == 0
}

/// The echo packet loopscope sends (RFC 5880 §4.2 leaves its contents to the sender): a magic,
/// the sender's discriminator, a sequence number and the send time, so a looped-back packet is
/// recognised and timed.
///
/// ```text
/// 0        4                8                 16                24
/// | LSBE | my discriminator | sequence number | send time, ns   |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoRepr {
    /// The discriminator of the session that sent it.
    pub discriminator: u32,
    /// The packet's number.
    pub sequence: u64,
    /// When it was sent, in nanoseconds of the sender's clock.
    pub sent_ns: u64,
}

/// The echo packet's magic, "LSBE" (loopscope BFD echo).
pub const ECHO_MAGIC: [u8; 4] = *b"LSBE";
/// The echo packet's length.
pub const ECHO_LEN: usize = 24;

/// Why bytes are not one of our echo packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EchoPacketError {
    /// Too short.
    #[error("{0} octets is shorter than an echo packet")]
    Truncated(usize),
    /// Not our magic.
    #[error("not a loopscope echo packet")]
    NotOurs,
}

impl EchoRepr {
    /// Parses a looped-back echo packet.
    pub fn parse(bytes: &[u8]) -> Result<Self, EchoPacketError> {
        if bytes.len() < ECHO_LEN {
            return Err(EchoPacketError::Truncated(bytes.len()));
        }
        if bytes[..4] != ECHO_MAGIC {
            return Err(EchoPacketError::NotOurs);
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[8..16]);
        let sequence = u64::from_be_bytes(word);
        word.copy_from_slice(&bytes[16..24]);
        Ok(EchoRepr {
            discriminator: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            sequence,
            sent_ns: u64::from_be_bytes(word),
        })
    }

    /// Writes the packet; `buffer` must hold [`ECHO_LEN`] octets.
    pub fn emit(&self, buffer: &mut [u8; ECHO_LEN]) {
        buffer[..4].copy_from_slice(&ECHO_MAGIC);
        buffer[4..8].copy_from_slice(&self.discriminator.to_be_bytes());
        buffer[8..16].copy_from_slice(&self.sequence.to_be_bytes());
        buffer[16..24].copy_from_slice(&self.sent_ns.to_be_bytes());
    }
}

#[cfg(test)]
mod tests;

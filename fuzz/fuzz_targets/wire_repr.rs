//! Every `Repr` of loopscope-wire on arbitrary bytes (the first byte picks the format): the
//! datagram header, the ping frame, ICMP/ICMPv6 echo with its stamp, and the IPv4 header a raw
//! socket hands over. What `parse` accepts, `emit` must give back byte for byte.
#![no_main]

use std::net::Ipv6Addr;

use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;

/// The message with a checksum field of 0xffff written as 0x0000. In one's complement both are
/// zero and a receiver must take either (RFC 1071, RFC 1624 section 3: incremental updates
/// produce either): a message can verify with one where `emit` writes the other, in both
/// directions (found by this target). It is the one thing `parse` accepts that `emit` does not
/// produce, so both sides of a comparison are put in this form.
fn canonical_zero(message: &[u8]) -> Vec<u8> {
    let mut copy = message.to_vec();
    if copy.len() >= 4 && copy[2..4] == [0xff, 0xff] {
        copy[2..4].copy_from_slice(&[0, 0]);
    }
    copy
}
use loopscope_wire::datagram::{self, Datagram, DatagramRepr};
use loopscope_wire::icmp::{EchoPacket, EchoRepr, EchoStamp, Version};
use loopscope_wire::ipv4::Ipv4Packet;
use loopscope_wire::ping_frame::{Frame, FrameRepr};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => {
            if let Ok(view) = Datagram::new_checked(bytes) {
                let repr = DatagramRepr::parse(&view);
                let mut out = vec![0u8; datagram::HEADER_LEN];
                repr.emit(&mut out);
                assert_eq!(&out[..], &bytes[..datagram::HEADER_LEN]);
                assert_eq!(view.payload(), &bytes[datagram::HEADER_LEN..]);
            }
        }
        1 => {
            if let Ok(frame) = Frame::new_checked(bytes)
                && let Ok(repr) = FrameRepr::parse(&frame)
            {
                let mut out = vec![0u8; repr.buffer_len()];
                repr.emit(&mut out);
                assert_eq!(&out[..], &bytes[..out.len()]);
                assert_eq!(out.len(), frame.total_len());
            }
        }
        2 | 3 => {
            let version = if selector % 5 == 2 {
                Version::V4
            } else {
                Version::V6
            };
            if let Ok(packet) = EchoPacket::new_checked(bytes)
                && let Ok(repr) = EchoRepr::parse(&packet, version)
            {
                let mut out = vec![0u8; repr.buffer_len()];
                let mut view = EchoPacket::new_checked(&mut out[..]).expect("emit buffer");
                repr.emit(&mut view);
                if version == Version::V4 {
                    assert_eq!(canonical_zero(&out), canonical_zero(bytes));
                } else {
                    // ICMPv6 leaves the checksum to the socket.
                    assert_eq!(&out[..2], &bytes[..2]);
                    assert_eq!(&out[4..], &bytes[4..]);
                }
                if let Ok(stamp) = EchoStamp::parse(repr.payload) {
                    let mut again = [0u8; 16];
                    stamp.emit(&mut again);
                    assert_eq!(&again[..], &repr.payload[..16]);
                }
            }
            let (source, destination) = (Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST);
            if let Ok(packet) = EchoPacket::new_checked(bytes)
                && let Ok(repr) = EchoRepr::parse_v6_checked(&packet, source, destination)
            {
                let mut out = vec![0u8; repr.buffer_len()];
                let mut view = EchoPacket::new_checked(&mut out[..]).expect("emit buffer");
                repr.emit_v6_checked(&mut view, source, destination);
                assert_eq!(canonical_zero(&out), canonical_zero(bytes));
            }
        }
        _ => {
            if let Ok(packet) = Ipv4Packet::new_checked(bytes) {
                let _ = (packet.ttl(), packet.protocol(), packet.payload().len());
            }
        }
    }
});

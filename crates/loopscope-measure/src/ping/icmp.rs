//! Pings by ICMP echo (`icmp://ADDR`).

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use loopscope_link::transport::icmp::{
    Bind, EchoSocket, IcmpError, MAX_PAYLOAD, STAMP_LEN, SocketChoice, SocketKind,
};
use serde_json::{Map, Value, json};

use super::{LinkFailure, Pinger, Received, SendError};

/// ICMP or ICMPv6 echo through a datagram or raw socket.
pub struct IcmpPinger {
    socket: EchoSocket,
}

impl IcmpPinger {
    /// Opens an echo socket of `choice` to `target`.
    pub fn open(target: IpAddr, choice: SocketChoice) -> Result<Self, IcmpError> {
        Ok(IcmpPinger {
            socket: EchoSocket::open(target, choice)?,
        })
    }

    /// Opens a pinger whose requests leave from `bind`'s source address and interface.
    pub fn open_bound(
        target: IpAddr,
        choice: SocketChoice,
        bind: &Bind,
    ) -> Result<Self, IcmpError> {
        Ok(IcmpPinger {
            socket: EchoSocket::open_bound(target, choice, bind)?,
        })
    }

    /// The kind of socket opened.
    pub fn kind(&self) -> SocketKind {
        self.socket.kind()
    }
}

impl Pinger for IcmpPinger {
    fn target(&self) -> String {
        self.socket.target().to_string()
    }

    fn first_sequence(&self) -> u64 {
        1
    }

    fn payload_range(&self) -> std::ops::RangeInclusive<usize> {
        // The first bytes carry the stamp that matches replies to requests.
        STAMP_LEN..=MAX_PAYLOAD
    }

    fn banner(&self, payload: usize) -> String {
        format!(
            "PING {}: {} data bytes, {} ICMP socket",
            self.socket.target(),
            payload,
            self.socket.kind().name()
        )
    }

    fn send(&mut self, sequence: u64, payload: usize) -> Result<u64, SendError> {
        self.socket
            .send(sequence, payload)
            .map_err(|error| SendError::Transient(into_io(error)))
    }

    fn receive(&mut self, wait: Duration, out: &mut Vec<Received>) -> Result<(), LinkFailure> {
        match self.socket.receive(wait) {
            Ok(None) => Ok(()),
            Ok(Some(reply)) => {
                out.push(Received::Reply {
                    sequence: reply.sequence,
                    bytes: reply.bytes,
                    arrived_ns: reply.arrived_ns,
                    ttl: reply.ttl,
                    corrupt: reply.corrupt,
                });
                Ok(())
            }
            Err(error) => Err(LinkFailure::Receive(into_io(error))),
        }
    }

    fn summary_fields(&self, fields: &mut Map<String, Value>) {
        fields.insert("socket_kind".into(), json!(self.socket.kind().name()));
    }
}

fn into_io(error: IcmpError) -> io::Error {
    match error {
        IcmpError::Io(error) => error,
        other => io::Error::other(other.to_string()),
    }
}

//! The framer: payload in, framed line signal out, in any number of bytes at a time.

use super::bits::{BitQueue, BitWriter};
use super::crc::{Crc4, Crc6};
use super::e1::{self, SiBit};
use super::t1::{self, EsfBit};
use super::{ChannelRate, Framing, Timeslots};

/// Where the framer takes the payload from: the next bytes of a stream, bits in time order,
/// most significant bit first.
pub trait PayloadSource {
    /// Fills `buf` with the next payload bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

impl PayloadSource for crate::Generator {
    fn fill(&mut self, buf: &mut [u8]) {
        crate::Generator::fill(self, buf);
    }
}

/// A bit sequence repeated forever (a loop code, an idle code, an FDL message).
#[derive(Debug, Clone)]
pub struct RepeatingBits {
    /// One period of the pattern repeated 8 times, packed MSB-first: a whole number of bytes.
    bytes: Vec<u8>,
    at: usize,
}

impl RepeatingBits {
    /// `period` holds one bit per element (0 or 1), first-transmitted first. Empty is all ones.
    pub fn new(period: &[u8]) -> Self {
        let period: Vec<u8> = if period.is_empty() {
            vec![1]
        } else {
            period.to_vec()
        };
        let mut writer = BitWriter::default();
        for _ in 0..8 {
            for &bit in &period {
                writer.push(bit & 1, 1);
            }
        }
        RepeatingBits {
            bytes: writer.out,
            at: 0,
        }
    }

    /// Fills `buf` with the next bytes (the same as [`PayloadSource::fill`], without the trait
    /// in scope).
    pub fn fill_into(&mut self, buf: &mut [u8]) {
        PayloadSource::fill(self, buf);
    }

    /// The same octet over and over.
    pub fn octet(value: u8) -> Self {
        RepeatingBits {
            bytes: vec![value],
            at: 0,
        }
    }
}

impl PayloadSource for RepeatingBits {
    fn fill(&mut self, buf: &mut [u8]) {
        for slot in buf.iter_mut() {
            *slot = self.bytes[self.at];
            self.at += 1;
            if self.at == self.bytes.len() {
                self.at = 0;
            }
        }
    }
}

/// What the ESF facility data link sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdlTx {
    /// HDLC flags (`01111110`), the idle state of the data link (T1.403 §9.4).
    Idle,
    /// A bit sequence repeated for as long as it is set, first-transmitted bit first (a
    /// bit-oriented message in line order).
    Repeat(Vec<u8>),
}

impl FdlTx {
    fn bits(&self) -> Vec<u8> {
        match self {
            FdlTx::Idle => vec![0, 1, 1, 1, 1, 1, 1, 0],
            FdlTx::Repeat(bits) if !bits.is_empty() => bits.iter().map(|b| b & 1).collect(),
            FdlTx::Repeat(_) => vec![0, 1, 1, 1, 1, 1, 1, 0],
        }
    }
}

/// Frames a payload: the selected timeslots carry the payload stream in order (timeslot by
/// timeslot, frame by frame), the others the idle octet; the overhead follows the standard's
/// table for the framing.
pub struct Framer {
    framing: Framing,
    slots: Vec<u8>,
    rate: ChannelRate,
    idle_octet: u8,
    /// 0-based index in the multiframe of the next frame.
    frame: usize,
    crc6: Crc6,
    crc4: Crc4,
    /// The remainder of the last complete CRC block, sent in the current one.
    last_check: u8,
    fdl: Vec<u8>,
    fdl_at: usize,
    remote_alarm: bool,
    /// E-bits still to be sent as 0.
    far_end_errors: u64,
    payload: BitQueue,
    /// Frames of payload pulled from the source at a time.
    batch_frames: usize,
    writer: BitWriter,
    /// Bytes of `writer.out` already handed out.
    staged_read: usize,
    scratch: [u8; 32],
}

impl std::fmt::Debug for Framer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framer")
            .field("framing", &self.framing)
            .field("slots", &self.slots)
            .field("frame", &self.frame)
            .finish_non_exhaustive()
    }
}

impl Framer {
    /// A framer putting the payload into `timeslots`; the other timeslots carry `idle_octet`.
    pub fn new(framing: Framing, timeslots: &Timeslots, idle_octet: u8) -> Self {
        Framer {
            framing,
            slots: timeslots.slots().to_vec(),
            rate: timeslots.rate(),
            idle_octet,
            frame: 0,
            crc6: Crc6::new(),
            crc4: Crc4::new(),
            last_check: 0,
            fdl: FdlTx::Idle.bits(),
            fdl_at: 0,
            remote_alarm: false,
            far_end_errors: 0,
            payload: BitQueue::default(),
            batch_frames: 64,
            writer: BitWriter::default(),
            staged_read: 0,
            scratch: [0; 32],
        }
    }

    /// The framing it produces.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// How many frames of payload to pull from the source at once (default 64). A source that
    /// is fed live (a loopback) wants 1, so the framer never takes what has not arrived.
    pub fn set_batch_frames(&mut self, frames: usize) {
        self.batch_frames = frames.max(1);
    }

    /// Maps the payload into other timeslots from the next frame on, keeping the frame phase
    /// (a test set switching from a loop code in every timeslot to a pattern in some). Payload
    /// already pulled from the old source is dropped.
    pub fn set_timeslots(&mut self, timeslots: &Timeslots) {
        self.slots = timeslots.slots().to_vec();
        self.rate = timeslots.rate();
        self.payload = BitQueue::default();
    }

    /// What the ESF data link sends from now on (ignored by other framings).
    pub fn set_fdl(&mut self, fdl: FdlTx) {
        self.fdl = fdl.bits();
        self.fdl_at = 0;
    }

    /// Sets the E1 A-bit (remote alarm indication).
    pub fn set_remote_alarm(&mut self, on: bool) {
        self.remote_alarm = on;
    }

    /// Reports one errored received CRC-4 block to the far end: the next E-bit is sent as 0.
    pub fn report_far_end_block_error(&mut self) {
        self.far_end_errors += 1;
    }

    /// Fills `out` with the next bytes of the line signal.
    pub fn fill(&mut self, out: &mut [u8], source: &mut dyn PayloadSource) {
        let mut done = 0;
        while done < out.len() {
            let staged = self.writer.out.len() - self.staged_read;
            if staged == 0 {
                self.writer.out.clear();
                self.staged_read = 0;
                let wanted = out.len() - done;
                while self.writer.out.len() < wanted {
                    self.next_frame(source);
                }
                continue;
            }
            let take = staged.min(out.len() - done);
            out[done..done + take]
                .copy_from_slice(&self.writer.out[self.staged_read..self.staged_read + take]);
            self.staged_read += take;
            done += take;
        }
    }

    /// Takes the selected timeslots' payload for one frame into `scratch` (indexed by
    /// timeslot number - 1), idle octets elsewhere.
    fn take_payload(&mut self, source: &mut dyn PayloadSource) {
        let channels = usize::from(self.framing.channels());
        self.scratch[..channels].fill(self.idle_octet);
        let per_slot = self.rate.bits();
        let need = self.slots.len() * per_slot;
        if self.payload.available_bits() < need {
            let want_bits = need * self.batch_frames;
            let short = want_bits - self.payload.available_bits();
            source.fill(self.payload.refill(short.div_ceil(8)));
        }
        match self.rate {
            ChannelRate::K64 => {
                let mut octets = [0u8; 31];
                let count = self.slots.len();
                self.payload.take_octets(&mut octets[..count]);
                for (&slot, &octet) in self.slots.iter().zip(&octets[..count]) {
                    self.scratch[usize::from(slot) - 1] = octet;
                }
            }
            ChannelRate::K56 => {
                for &slot in &self.slots {
                    // Bits 1-7 carry data; bit 8 is held at 1.
                    self.scratch[usize::from(slot) - 1] = (self.payload.take(7) << 1) | 1;
                }
            }
        }
    }

    fn next_fdl_bit(&mut self) -> u8 {
        let bit = self.fdl[self.fdl_at];
        self.fdl_at = (self.fdl_at + 1) % self.fdl.len();
        bit
    }

    fn next_frame(&mut self, source: &mut dyn PayloadSource) {
        self.take_payload(source);
        let frame = self.frame;
        match self.framing {
            Framing::Sf => {
                self.writer.push(t1::SF_FRAMING_BITS[frame], 1);
                self.writer.push_octets(&self.scratch[..24]);
            }
            Framing::Esf => {
                let f_bit = match t1::esf_bit(frame + 1) {
                    EsfBit::DataLink => self.next_fdl_bit(),
                    EsfBit::Crc(k) => (self.last_check >> (6 - k)) & 1,
                    EsfBit::Fps(bit) => bit,
                };
                // The CRC-6 covers the frame with its F-bit set to 1 (T1.403 §8.1.2.2).
                self.crc6.bit(1);
                self.crc6.bytes(&self.scratch[..24]);
                self.writer.push(f_bit, 1);
                self.writer.push_octets(&self.scratch[..24]);
                if frame == 23 {
                    self.last_check = self.crc6.value();
                    self.crc6 = Crc6::new();
                }
            }
            Framing::E1 | Framing::E1Crc4 => {
                let crc4 = self.framing == Framing::E1Crc4;
                let si = if !crc4 {
                    1
                } else {
                    match e1::si_bit(frame) {
                        SiBit::Crc(k) => (self.last_check >> (4 - k)) & 1,
                        SiBit::Mfas(bit) => bit,
                        SiBit::E => {
                            if self.far_end_errors > 0 {
                                self.far_end_errors -= 1;
                                0
                            } else {
                                1
                            }
                        }
                    }
                };
                let ts0 = if frame.is_multiple_of(2) {
                    (si << 7) | e1::FAS
                } else {
                    let alarm = if self.remote_alarm { e1::NFAS_A_BIT } else { 0 };
                    (si << 7) | e1::NFAS_BIT2 | alarm | e1::NFAS_SA_BITS
                };
                if crc4 {
                    // The C-bit positions count as 0 in the CRC-4 (G.704 §2.3.3.5.2).
                    let counted = if frame.is_multiple_of(2) {
                        ts0 & !e1::SI_BIT
                    } else {
                        ts0
                    };
                    self.crc4.bytes(&[counted]);
                    self.crc4.bytes(&self.scratch[..31]);
                }
                self.writer.push_octets(&[ts0]);
                self.writer.push_octets(&self.scratch[..31]);
                if crc4 && frame % 8 == 7 {
                    self.last_check = self.crc4.value();
                    self.crc4 = Crc4::new();
                }
            }
        }
        self.frame = (frame + 1) % self.framing.multiframe_frames();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeating_bits_keep_their_period_across_calls() {
        let mut code = RepeatingBits::new(&[0, 0, 0, 0, 1]);
        let mut a = [0u8; 3];
        let mut b = [0u8; 2];
        code.fill(&mut a);
        code.fill(&mut b);
        // 00001 00001 00001 00001 00001 00001 00001 00001 = 40 bits = 5 bytes.
        assert_eq!(
            [a.as_slice(), b.as_slice()].concat(),
            [
                0b0000_1000,
                0b0100_0010,
                0b0001_0000,
                0b1000_0100,
                0b0010_0001
            ]
        );
    }

    #[test]
    fn output_is_the_same_however_it_is_cut() {
        let slots = Timeslots::parse("1-12:56k", Framing::Esf).unwrap();
        let mut whole = Framer::new(Framing::Esf, &slots, 0x7F);
        let mut pieces = Framer::new(Framing::Esf, &slots, 0x7F);
        let spec = crate::PatternSpec::standard(crate::PatternKind::Prbs15);
        let mut source_a = crate::Generator::new(&spec);
        let mut source_b = crate::Generator::new(&spec);
        let mut one = vec![0u8; 5000];
        whole.fill(&mut one, &mut source_a);
        let mut two = Vec::new();
        for size in [1usize, 7, 193, 579, 1000, 3220] {
            let mut part = vec![0u8; size];
            pieces.fill(&mut part, &mut source_b);
            two.extend_from_slice(&part);
        }
        assert_eq!(one, two);
    }
}

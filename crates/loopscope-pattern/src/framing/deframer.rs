//! The deframer: hunts for frame alignment, keeps it by the standard's rules, takes the payload
//! of the selected timeslots out and counts framing-bit errors, CRC errors, E-bits and
//! out-of-frame events.
//!
//! # Alignment rules
//!
//! - **Hunt.** A candidate position is accepted when the framing pattern holds there over a
//!   span long enough that random data would almost never match it (about 2^-24 per candidate
//!   or less): SF, 48 F-bits (4 superframes); ESF, 24 FPS bits (4 ESFs, 12 ms); E1, 4 frame
//!   alignment signals and the NFAS bit 2 between them (G.706 §4.1.2 asks for FAS, NFAS, FAS:
//!   we check longer so a payload cannot fake it); E1 CRC-4, frame and multiframe alignment
//!   together over 2 multiframes (G.706 §4.2 asks for two multiframe alignment signals within
//!   8 ms). A window of one multiframe period of candidates is tried at a time; when none
//!   holds, the window's bits count as out of frame and the next window is tried.
//! - **Loss.** T1: 2 errored framing bits among the last 4 (F-bits for SF, FPS bits for ESF;
//!   ANSI T1.231 allows 2 of 4 to 2 of 6). E1: 3 consecutive errored frame alignment signals
//!   (G.706 §4.1.1), or with CRC-4, 915 or more errored CRC-4 blocks in 1000 (G.706 §4.3.2).
//!   After a loss the hunt starts again at the next frame position.
//!
//! # What is counted
//!
//! - `frame_bit_errors`: framing bits received wrong. T1 SF: every F-bit. ESF: FPS bits. E1:
//!   each wrong bit of a FAS (7 per word), NFAS bit 2 and, with CRC-4, the multiframe alignment
//!   bits.
//! - `crc_blocks`, `crc_errors`: blocks checked (ESF: one per ESF; CRC-4: one per
//!   sub-multiframe) and those whose received check bits differ from the computed CRC. The first
//!   block after alignment is not checked (its check bits came in before alignment).
//! - `far_end_block_errors`: E-bits received as 0 (the far end saw an errored CRC-4 block).
//! - `oof_events`, `out_of_frame_bits`: losses of alignment, and line bits received while not
//!   aligned (including the initial hunt).

use serde::Serialize;

use super::bits::{BitWriter, bit, octet, octets};
use super::crc::{Crc4, Crc6};
use super::e1::{self, SiBit};
use super::t1::{self, EsfBit};
use super::{ChannelRate, Framing, Timeslots};

/// Running totals; all only grow, except `in_frame`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeframerCounters {
    /// Line bits consumed (in frame and out of frame).
    pub line_bits: u64,
    /// Frames received in alignment.
    pub frames: u64,
    /// Framing bits (FAS/NFAS, Ft/Fs, ESF FPS) received wrong while in frame.
    pub frame_bit_errors: u64,
    /// CRC blocks checked (ESF superframes, E1 CRC-4 sub-multiframes).
    pub crc_blocks: u64,
    /// CRC blocks whose CRC did not match.
    pub crc_errors: u64,
    /// Block errors the far end reports having received (E1 CRC-4 E-bits).
    pub far_end_block_errors: u64,
    /// E1 NFAS frames with the A-bit (remote alarm) set.
    pub remote_alarm_frames: u64,
    /// Losses of frame alignment.
    pub oof_events: u64,
    /// Line bits received while out of frame.
    pub out_of_frame_bits: u64,
    /// Times alignment was found (the first time included).
    pub alignments: u64,
    /// Whether it is in frame now.
    pub in_frame: bool,
}

/// A change of alignment, at a line bit position (counted from the first bit fed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeframerEvent {
    /// Frame alignment found.
    FrameAligned {
        /// Where.
        at_bit: u64,
    },
    /// Frame alignment lost (G.706 §4.1.1, §4.3.2).
    FrameLost {
        /// Where.
        at_bit: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Hunting,
    /// Aligned; the next frame has this 0-based index in the multiframe.
    InFrame(usize),
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Deframer {
    framing: Framing,
    slots: Vec<u8>,
    rate: ChannelRate,
    /// `Some((first, count))` when the selected timeslots are contiguous (fast path).
    contiguous: Option<(usize, usize)>,
    /// Received line bytes not yet consumed; `pos` is the next unconsumed bit.
    buf: Vec<u8>,
    pos: usize,
    state: State,
    counters: DeframerCounters,
    crc6: Crc6,
    crc4: Crc4,
    /// Check bits received in the current block (they check the previous block).
    received_check: u8,
    /// The computed remainder of the previous block, when it was received in alignment.
    previous_crc: Option<u8>,
    /// Last framing-bit verdicts (T1), 1 = errored, newest in bit 0.
    recent_errors: u8,
    fas_errors_in_row: u32,
    crc4_window_blocks: u32,
    crc4_window_errors: u32,
    payload: BitWriter,
    collect_fdl: bool,
    fdl_bits: Vec<u8>,
    events: Vec<DeframerEvent>,
}

impl Deframer {
    /// A deframer for `framing` that hands on the payload of `timeslots`.
    pub fn new(framing: Framing, timeslots: &Timeslots) -> Self {
        let slots = timeslots.slots().to_vec();
        let contiguous = match (slots.first(), slots.last()) {
            (Some(&first), Some(&last)) if usize::from(last - first) + 1 == slots.len() => {
                Some((usize::from(first) - 1, slots.len()))
            }
            _ => None,
        };
        Deframer {
            framing,
            slots,
            rate: timeslots.rate(),
            contiguous,
            buf: Vec::new(),
            pos: 0,
            state: State::Hunting,
            counters: DeframerCounters::default(),
            crc6: Crc6::new(),
            crc4: Crc4::new(),
            received_check: 0,
            previous_crc: None,
            recent_errors: 0,
            fas_errors_in_row: 0,
            crc4_window_blocks: 0,
            crc4_window_errors: 0,
            payload: BitWriter::default(),
            collect_fdl: false,
            fdl_bits: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The framing it looks for.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The totals so far.
    pub fn counters(&self) -> &DeframerCounters {
        &self.counters
    }

    /// Keeps the ESF data-link bits for [`Deframer::take_fdl_bits`] (off by default, so a
    /// long run that never reads them does not pile them up).
    pub fn collect_fdl(&mut self, on: bool) {
        self.collect_fdl = on;
    }

    /// Bits of the ESF data link received since the last call (one 0/1 per element).
    pub fn take_fdl_bits(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.fdl_bits)
    }

    /// Alignment changes since the last call.
    pub fn take_events(&mut self) -> Vec<DeframerEvent> {
        std::mem::take(&mut self.events)
    }

    /// Consumes line bytes; appends the payload of the selected timeslots of every complete
    /// frame received in alignment to `payload` (bits in time order, MSB first).
    pub fn feed(&mut self, line: &[u8], payload: &mut Vec<u8>) {
        self.buf.extend_from_slice(line);
        std::mem::swap(&mut self.payload.out, payload);
        let frame_bits = self.framing.frame_bits();
        loop {
            let available = self.buf.len() * 8 - self.pos;
            match self.state {
                State::Hunting => {
                    if !self.hunt() {
                        break;
                    }
                }
                State::InFrame(_) if available >= frame_bits => self.frame(),
                State::InFrame(_) => break,
            }
        }
        std::mem::swap(&mut self.payload.out, payload);
        let consumed = self.pos / 8;
        self.buf.drain(..consumed);
        self.pos -= consumed * 8;
    }

    /// (window of candidates, bits a candidate needs after its position)
    fn hunt_geometry(&self) -> (usize, usize) {
        match self.framing {
            Framing::Sf => (12 * t1::FRAME_BITS, 47 * t1::FRAME_BITS + 1),
            Framing::Esf => (24 * t1::FRAME_BITS, 95 * t1::FRAME_BITS + 1),
            Framing::E1 => (2 * e1::FRAME_BITS, 6 * e1::FRAME_BITS + 8),
            Framing::E1Crc4 => (16 * e1::FRAME_BITS, 31 * e1::FRAME_BITS + 8),
        }
    }

    /// Whether the framing pattern holds at `at` (the first bit of multiframe frame 0).
    fn candidate_holds(&self, at: usize) -> bool {
        let buf = &self.buf;
        match self.framing {
            Framing::Sf => {
                (0..48).all(|j| bit(buf, at + j * t1::FRAME_BITS) == t1::SF_FRAMING_BITS[j % 12])
            }
            Framing::Esf => {
                (0..24).all(|k| bit(buf, at + (4 * k + 3) * t1::FRAME_BITS) == t1::ESF_FPS[k % 6])
            }
            Framing::E1 => (0..7).all(|f| {
                let ts0 = octet(buf, at + f * e1::FRAME_BITS);
                if f % 2 == 0 {
                    ts0 & e1::FAS_MASK == e1::FAS
                } else {
                    ts0 & e1::NFAS_BIT2 != 0
                }
            }),
            Framing::E1Crc4 => (0..32).all(|f| {
                let ts0 = octet(buf, at + f * e1::FRAME_BITS);
                if f % 2 == 0 {
                    ts0 & e1::FAS_MASK == e1::FAS
                } else {
                    let si = ts0 >> 7;
                    ts0 & e1::NFAS_BIT2 != 0
                        && match e1::si_bit(f % 16) {
                            SiBit::Mfas(want) => si == want,
                            _ => true,
                        }
                }
            }),
        }
    }

    /// Tries to align; false when more data is needed.
    fn hunt(&mut self) -> bool {
        let (window, span) = self.hunt_geometry();
        loop {
            let available = self.buf.len() * 8 - self.pos;
            if available < window + span {
                return false;
            }
            if let Some(offset) = (0..window).find(|&c| self.candidate_holds(self.pos + c)) {
                self.pos += offset;
                self.counters.line_bits += offset as u64;
                self.counters.out_of_frame_bits += offset as u64;
                self.align();
                return true;
            }
            self.pos += window;
            self.counters.line_bits += window as u64;
            self.counters.out_of_frame_bits += window as u64;
        }
    }

    fn align(&mut self) {
        self.state = State::InFrame(0);
        self.counters.in_frame = true;
        self.counters.alignments += 1;
        self.reset_monitors();
        self.events.push(DeframerEvent::FrameAligned {
            at_bit: self.counters.line_bits,
        });
    }

    fn lose_alignment(&mut self) {
        self.state = State::Hunting;
        self.counters.in_frame = false;
        self.counters.oof_events += 1;
        self.reset_monitors();
        self.events.push(DeframerEvent::FrameLost {
            at_bit: self.counters.line_bits,
        });
    }

    fn reset_monitors(&mut self) {
        self.crc6 = Crc6::new();
        self.crc4 = Crc4::new();
        self.received_check = 0;
        self.previous_crc = None;
        self.recent_errors = 0;
        self.fas_errors_in_row = 0;
        self.crc4_window_blocks = 0;
        self.crc4_window_errors = 0;
    }

    /// Records a T1 framing-bit verdict; true when it loses alignment (2 of the last 4).
    fn t1_framing_bit(&mut self, errored: bool) -> bool {
        if errored {
            self.counters.frame_bit_errors += 1;
        }
        self.recent_errors = ((self.recent_errors << 1) | u8::from(errored)) & 0x0F;
        self.recent_errors.count_ones() >= 2
    }

    /// Closes a CRC block: compares the check bits received during it with the previous
    /// block's remainder. Returns whether the block was errored (None: not checked).
    fn close_block(&mut self, remainder: u8) -> Option<bool> {
        let verdict = self.previous_crc.map(|expected| {
            self.counters.crc_blocks += 1;
            let errored = expected != self.received_check;
            if errored {
                self.counters.crc_errors += 1;
            }
            errored
        });
        self.previous_crc = Some(remainder);
        self.received_check = 0;
        verdict
    }

    fn emit_payload(&mut self, octets_of_frame: &[u8]) {
        match (self.rate, self.contiguous) {
            (ChannelRate::K64, Some((first, count))) => {
                self.payload
                    .push_octets(&octets_of_frame[first..first + count]);
            }
            (ChannelRate::K64, None) => {
                for &slot in &self.slots {
                    self.payload
                        .push_octets(&[octets_of_frame[usize::from(slot) - 1]]);
                }
            }
            (ChannelRate::K56, _) => {
                for &slot in &self.slots {
                    self.payload
                        .push(octets_of_frame[usize::from(slot) - 1] >> 1, 7);
                }
            }
        }
    }

    /// Processes one complete frame at `pos`.
    fn frame(&mut self) {
        let State::InFrame(index) = self.state else {
            return;
        };
        let frame_bits = self.framing.frame_bits();
        let at = self.pos;
        let mut frame_octets = [0u8; 31];
        let mut lost = false;
        match self.framing {
            Framing::Sf => {
                let f_bit = bit(&self.buf, at);
                octets(&self.buf, at + 1, &mut frame_octets[..24]);
                lost = self.t1_framing_bit(f_bit != t1::SF_FRAMING_BITS[index]);
            }
            Framing::Esf => {
                let f_bit = bit(&self.buf, at);
                octets(&self.buf, at + 1, &mut frame_octets[..24]);
                self.crc6.bit(1);
                self.crc6.bytes(&frame_octets[..24]);
                match t1::esf_bit(index + 1) {
                    EsfBit::DataLink if self.collect_fdl => self.fdl_bits.push(f_bit),
                    EsfBit::DataLink => {}
                    EsfBit::Crc(k) => self.received_check |= f_bit << (6 - k),
                    EsfBit::Fps(want) => lost = self.t1_framing_bit(f_bit != want),
                }
                if index == 23 {
                    let remainder = self.crc6.value();
                    self.crc6 = Crc6::new();
                    self.close_block(remainder);
                }
            }
            Framing::E1 | Framing::E1Crc4 => {
                let ts0 = octet(&self.buf, at);
                octets(&self.buf, at + 8, &mut frame_octets[..31]);
                let crc4 = self.framing == Framing::E1Crc4;
                let si = ts0 >> 7;
                if index % 2 == 0 {
                    let wrong = u64::from(((ts0 & e1::FAS_MASK) ^ e1::FAS).count_ones());
                    self.counters.frame_bit_errors += wrong;
                    if wrong > 0 {
                        self.fas_errors_in_row += 1;
                        lost = self.fas_errors_in_row >= e1::FAS_ERRORS_FOR_LOSS;
                    } else {
                        self.fas_errors_in_row = 0;
                    }
                } else {
                    if ts0 & e1::NFAS_BIT2 == 0 {
                        self.counters.frame_bit_errors += 1;
                    }
                    if ts0 & e1::NFAS_A_BIT != 0 {
                        self.counters.remote_alarm_frames += 1;
                    }
                }
                if crc4 {
                    match e1::si_bit(index) {
                        SiBit::Crc(k) => self.received_check |= si << (4 - k),
                        SiBit::Mfas(want) => {
                            if si != want {
                                self.counters.frame_bit_errors += 1;
                            }
                        }
                        SiBit::E => {
                            if si == 0 {
                                self.counters.far_end_block_errors += 1;
                            }
                        }
                    }
                    let counted = if index % 2 == 0 {
                        ts0 & !e1::SI_BIT
                    } else {
                        ts0
                    };
                    self.crc4.bytes(&[counted]);
                    self.crc4.bytes(&frame_octets[..31]);
                    if index % 8 == 7 {
                        let remainder = self.crc4.value();
                        self.crc4 = Crc4::new();
                        if let Some(errored) = self.close_block(remainder) {
                            self.crc4_window_blocks += 1;
                            self.crc4_window_errors += u32::from(errored);
                            if self.crc4_window_blocks == e1::CRC4_LOSS_WINDOW {
                                if self.crc4_window_errors >= e1::CRC4_LOSS_ERRORS {
                                    lost = true;
                                }
                                self.crc4_window_blocks = 0;
                                self.crc4_window_errors = 0;
                            }
                        }
                    }
                }
            }
        }
        self.emit_payload(&frame_octets);
        self.pos += frame_bits;
        self.counters.line_bits += frame_bits as u64;
        self.counters.frames += 1;
        if lost {
            self.lose_alignment();
        } else {
            self.state = State::InFrame((index + 1) % self.framing.multiframe_frames());
        }
    }
}

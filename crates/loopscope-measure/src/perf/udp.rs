//! UDP data streams: iperf3's datagram header, and what a receiver learns from it (loss,
//! reordering, RFC 3550 interarrival jitter).
//!
//! Every datagram starts with the sender's clock (seconds and microseconds, 32 bits each, big
//! endian) and a sequence number counting from 1: 32 bits, or 64 when the client asked for
//! `udp_counters_64bit`. The clock's epoch does not matter: jitter is built from differences of
//! transit times, in which the offset between the two clocks cancels.

use std::time::Duration;

/// Header bytes before the payload.
pub(super) fn header_len(counters_64bit: bool) -> usize {
    if counters_64bit { 16 } else { 12 }
}

/// Writes the header into the start of `datagram`. The caller guarantees room for it.
pub(super) fn write_header(
    datagram: &mut [u8],
    sent: Duration,
    sequence: u64,
    counters_64bit: bool,
) {
    let seconds = sent.as_secs() as u32;
    datagram[0..4].copy_from_slice(&seconds.to_be_bytes());
    datagram[4..8].copy_from_slice(&sent.subsec_micros().to_be_bytes());
    if counters_64bit {
        datagram[8..16].copy_from_slice(&sequence.to_be_bytes());
    } else {
        datagram[8..12].copy_from_slice(&(sequence as u32).to_be_bytes());
    }
}

/// The sender's timestamp and the sequence number, or `None` for a datagram too short to
/// carry them (a stray hello).
pub(super) fn read_header(datagram: &[u8], counters_64bit: bool) -> Option<(Duration, u64)> {
    if datagram.len() < header_len(counters_64bit) {
        return None;
    }
    let word = |at: usize| {
        u32::from_be_bytes([
            datagram[at],
            datagram[at + 1],
            datagram[at + 2],
            datagram[at + 3],
        ])
    };
    let sent = Duration::from_secs(u64::from(word(0)))
        + Duration::from_micros(u64::from(word(4).min(999_999)));
    let sequence = if counters_64bit {
        u64::from_be_bytes(datagram[8..16].try_into().ok()?)
    } else {
        u64::from(word(8))
    };
    Some((sent, sequence))
}

/// What a UDP receiver counts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct UdpReceiveStats {
    /// Datagrams that carried a header.
    pub packets: u64,
    /// The highest sequence number seen.
    pub highest_sequence: u64,
    /// Datagrams whose sequence number was below one already seen.
    pub out_of_order: u64,
    /// RFC 3550 section 6.4.1 interarrival jitter, in seconds.
    pub jitter_s: f64,
    /// Transit time of the previous datagram (arrival minus its timestamp), seconds.
    last_transit_s: Option<f64>,
    /// The highest sequence number when the omitted start of the test ended (iperf3's `-O`).
    omitted_sequence: u64,
}

impl UdpReceiveStats {
    /// Accounts one datagram that left the sender at `sent` (sender's clock) and arrived at
    /// `arrived` (receiver's clock).
    pub(super) fn record(&mut self, sequence: u64, sent: Duration, arrived: Duration) {
        self.packets += 1;
        if sequence < self.highest_sequence {
            self.out_of_order += 1;
        } else {
            self.highest_sequence = sequence;
        }
        // RFC 3550 6.4.1: D(i-1,i) = (Rj - Ri) - (Sj - Si) = transit_j - transit_i, and
        // J += (|D| - J) / 16.
        let transit = arrived.as_secs_f64() - sent.as_secs_f64();
        if let Some(last) = self.last_transit_s {
            let difference = (transit - last).abs();
            self.jitter_s += (difference - self.jitter_s) / 16.0;
        }
        self.last_transit_s = Some(transit);
    }

    /// Datagrams expected: those the sender numbered after the omitted start. With the sender's
    /// own count (`sent`: the `packets` of the sending side in iperf3's results exchange) that
    /// is every datagram it sent, the last ones included. Without it only the highest sequence
    /// number seen is known (RFC 3550 A.3), and datagrams lost after the last one to arrive are
    /// expected by nobody: a loss at the very end of a test would be counted nowhere.
    pub(super) fn expected(&self, sent: Option<u64>) -> u64 {
        // A sender claiming fewer than were seen is not believed below what was seen.
        let last = sent.map_or(self.highest_sequence, |sent| {
            sent.max(self.highest_sequence)
        });
        last - self.omitted_sequence.min(last)
    }

    /// Datagrams lost: [`expected`](Self::expected) minus received. Negative when duplicates
    /// arrived.
    pub(super) fn lost(&self, sent: Option<u64>) -> i64 {
        self.expected(sent) as i64 - self.packets as i64
    }

    /// Ends the omitted start of a test (iperf3's `-O`): what arrived so far no longer counts;
    /// loss is counted from the datagrams after the highest sequence number seen now. Jitter
    /// runs on, as iperf3's does.
    pub(super) fn omit_so_far(&mut self) {
        self.omitted_sequence = self.highest_sequence;
        self.packets = 0;
        self.out_of_order = 0;
    }
}

/// Paces a sender to a bit rate: how long to wait before the next `bytes` may go.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pacer {
    bits_per_second: u64,
}

impl Pacer {
    /// `None` for an unlimited rate.
    pub(super) fn new(bits_per_second: u64) -> Option<Pacer> {
        (bits_per_second > 0).then_some(Pacer { bits_per_second })
    }

    /// How long a sender that has sent `bytes_sent` after `elapsed` must wait to stay at the
    /// rate (zero when it is behind).
    pub(super) fn wait(&self, bytes_sent: u64, elapsed: Duration) -> Duration {
        self.due(bytes_sent).saturating_sub(elapsed)
    }

    /// How far behind the rate a sender is (zero when it is ahead).
    pub(super) fn lag(&self, bytes_sent: u64, elapsed: Duration) -> Duration {
        elapsed.saturating_sub(self.due(bytes_sent))
    }

    fn due(&self, bytes_sent: u64) -> Duration {
        Duration::from_secs_f64(bytes_sent as f64 * 8.0 / self.bits_per_second as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first data datagram a stock iperf3 3.12 client sent (`-u -b 10M -l 1000`, strace):
    /// seconds 3281, microseconds 375089, sequence 1.
    const STOCK_DATAGRAM_HEAD: [u8; 12] = [0, 0, 0x0c, 0xd1, 0, 5, 0xb9, 0x31, 0, 0, 0, 1];
    /// A stock 64-bit-counter datagram (`--udp-counters-64bit`): sequence 1 in eight bytes.
    const STOCK_DATAGRAM_HEAD_64: [u8; 16] =
        [0, 0, 0x0c, 0xf3, 0, 5, 0x68, 0x6e, 0, 0, 0, 0, 0, 0, 0, 1];

    #[test]
    fn reads_stock_headers() {
        let (sent, sequence) = read_header(&STOCK_DATAGRAM_HEAD, false).unwrap();
        assert_eq!(sequence, 1);
        assert_eq!(
            sent,
            Duration::from_secs(3281) + Duration::from_micros(375_089)
        );
        let (_, sequence) = read_header(&STOCK_DATAGRAM_HEAD_64, true).unwrap();
        assert_eq!(sequence, 1);
        assert_eq!(read_header(b"9876", false), None);
    }

    #[test]
    fn writes_what_it_reads() {
        let mut datagram = [0u8; 12];
        write_header(
            &mut datagram,
            Duration::from_secs(3281) + Duration::from_micros(375_089),
            1,
            false,
        );
        assert_eq!(datagram, STOCK_DATAGRAM_HEAD);
    }

    #[test]
    fn loss_and_reordering_are_counted_as_rfc_3550_says() {
        let mut stats = UdpReceiveStats::default();
        let t = Duration::from_millis;
        // 1, 2, 4, 3, 6: number 5 lost, number 3 out of order.
        for (seq, ms) in [(1, 0), (2, 1), (4, 3), (3, 2), (6, 5)] {
            stats.record(seq, t(ms), t(ms + 10));
        }
        assert_eq!(stats.packets, 5);
        assert_eq!(stats.highest_sequence, 6);
        assert_eq!(stats.lost(None), 1);
        assert_eq!(stats.out_of_order, 1);
        // Constant transit: no jitter (but for rounding in the float seconds).
        assert!(stats.jitter_s.abs() < 1e-12, "{}", stats.jitter_s);
    }

    /// Datagrams 7 and 8 of 8 lost: no later datagram shows the gap, so only the sender's count
    /// (iperf3's results exchange) reveals them.
    #[test]
    fn losses_at_the_end_are_counted_from_the_senders_count() {
        let mut stats = UdpReceiveStats::default();
        let t = Duration::from_millis;
        for seq in [1, 2, 4, 3, 6] {
            stats.record(seq, t(seq), t(seq + 10));
        }
        assert_eq!(stats.lost(None), 1);
        assert_eq!(stats.lost(Some(8)), 3);
        assert_eq!(stats.expected(Some(8)), 8);
        // Everything lost: nothing seen at all.
        assert_eq!(UdpReceiveStats::default().lost(Some(40)), 40);
        // A sender's count below what arrived is not believed.
        assert_eq!(stats.lost(Some(2)), 1);
        // After the omitted start (datagrams up to 6), 7 and 8 are what was expected.
        stats.omit_so_far();
        assert_eq!(stats.lost(Some(8)), 2);
        assert_eq!(stats.lost(None), 0);
    }

    /// RFC 3550's estimator by hand: transits 10, 12, 10 ms give J = 2/16 ms, then
    /// J = 2/16 + (2 - 2/16)/16 ms.
    #[test]
    fn jitter_follows_the_rfc_3550_estimator() {
        let mut stats = UdpReceiveStats::default();
        let t = Duration::from_millis;
        stats.record(1, t(0), t(10));
        stats.record(2, t(20), t(32));
        let first = 0.002 / 16.0;
        assert!((stats.jitter_s - first).abs() < 1e-12, "{}", stats.jitter_s);
        stats.record(3, t(40), t(50));
        let second = first + (0.002 - first) / 16.0;
        assert!(
            (stats.jitter_s - second).abs() < 1e-12,
            "{}",
            stats.jitter_s
        );
    }

    #[test]
    fn pacing_waits_only_when_ahead() {
        let pacer = Pacer::new(8_000_000).unwrap(); // 1 MB/s
        assert_eq!(
            pacer.wait(1_000_000, Duration::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(
            pacer.wait(1_000_000, Duration::from_millis(500)),
            Duration::from_millis(500)
        );
        assert_eq!(
            pacer.lag(1_000_000, Duration::from_millis(1500)),
            Duration::from_millis(500)
        );
        assert_eq!(
            pacer.lag(1_000_000, Duration::from_millis(500)),
            Duration::ZERO
        );
        assert!(Pacer::new(0).is_none());
    }
}

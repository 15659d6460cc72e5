//! The availability rule G.821 and G.826 share: unavailable time begins at the first of 10
//! consecutive severely errored seconds (those 10 are unavailable) and ends at the first of 10
//! consecutive non-SES seconds (those 10 are available). Both recommendations count their
//! events in available time only; they differ only in what a second is and what is counted, so
//! the rule lives here once and each keeps its own tally.
//!
//! Whether a run changes the state is known only once it reaches 10 seconds, so up to 9
//! trailing seconds stay undecided; [`Availability::summary`] settles them in the current state.

/// Consecutive seconds that enter or leave unavailable time (ITU-T G.821 Annex A, G.826
/// Annex A).
pub const UNAVAILABILITY_SECONDS: usize = 10;

/// One second as the availability rule sees it.
pub(crate) trait Second {
    fn is_severely_errored(&self) -> bool;
}

/// The figures a recommendation keeps over its seconds.
pub(crate) trait Tally<S> {
    /// A second in available time.
    fn add_available(&mut self, second: &S);
    /// A second in unavailable time.
    fn add_unavailable(&mut self);
}

/// Seconds sorted into available and unavailable time, tallied by `T`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Availability<S, T> {
    /// Seconds already decided.
    settled: T,
    unavailable: bool,
    /// Undecided trailing seconds: SES while available, non-SES while unavailable (< 10).
    pending: Vec<S>,
}

impl<S: Second, T: Tally<S> + Clone> Availability<S, T> {
    /// Whether the measurement is in unavailable time (as far as decided).
    pub(crate) fn is_unavailable(&self) -> bool {
        self.unavailable
    }

    pub(crate) fn push(&mut self, second: S) {
        // A second that continues the run that could flip the state.
        let continues_run = second.is_severely_errored() != self.unavailable;
        if continues_run {
            self.pending.push(second);
            if self.pending.len() >= UNAVAILABILITY_SECONDS {
                // The run flips the state, and its seconds belong to the new state.
                self.unavailable = !self.unavailable;
                self.settle_pending();
            }
        } else {
            // The run broke: its seconds belong to the current state, as does this one.
            self.settle_pending();
            add(&mut self.settled, self.unavailable, &second);
        }
    }

    fn settle_pending(&mut self) {
        for second in std::mem::take(&mut self.pending) {
            add(&mut self.settled, self.unavailable, &second);
        }
    }

    /// The settled figures with the undecided tail counted in the current state.
    pub(crate) fn summary(&self) -> T {
        let mut summary = self.settled.clone();
        for second in &self.pending {
            add(&mut summary, self.unavailable, second);
        }
        summary
    }
}

fn add<S, T: Tally<S>>(tally: &mut T, unavailable: bool, second: &S) {
    if unavailable {
        tally.add_unavailable();
    } else {
        tally.add_available(second);
    }
}

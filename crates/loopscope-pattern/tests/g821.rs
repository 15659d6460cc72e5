//! G.821 accounting on a scripted per-second schedule, checked against counts worked out by
//! hand from the rules (ITU-T G.821).

use loopscope_pattern::g821::{G821, G821Summary, SecondTally};

const BITS: u64 = 1_000_000;

fn clean() -> SecondTally {
    SecondTally {
        bits: BITS,
        bit_errors: 0,
        sync_loss: false,
    }
}
/// Errored but not severely: BER 1e-6.
fn errored() -> SecondTally {
    SecondTally {
        bits: BITS,
        bit_errors: 1,
        sync_loss: false,
    }
}
/// Severely errored by BER (2e-3).
fn severe() -> SecondTally {
    SecondTally {
        bits: BITS,
        bit_errors: 2000,
        sync_loss: false,
    }
}
/// Severely errored by loss of sync.
fn lost() -> SecondTally {
    SecondTally {
        bits: 0,
        bit_errors: 0,
        sync_loss: true,
    }
}

fn push_all(g821: &mut G821, seconds: &[SecondTally]) {
    for second in seconds {
        g821.push(*second);
    }
}

#[test]
fn scripted_schedule_matches_hand_counts() {
    let mut g821 = G821::new();
    // 1. C C E S C: available; ES 2 (E, S), SES 1, EFS 3.
    push_all(&mut g821, &[clean(), clean(), errored(), severe(), clean()]);
    // 2. ten SES: unavailable from the first of them.
    push_all(&mut g821, &[severe(); 10]);
    // 3. C C S while unavailable: the non-SES run breaks, all three stay unavailable.
    push_all(&mut g821, &[clean(), clean(), severe()]);
    // 4. E then nine C: ten non-SES, available from the first; ES 1, EFS 9.
    push_all(&mut g821, &[errored()]);
    push_all(&mut g821, &[clean(); 9]);
    // 5. S S S C: three SES are not ten; available; ES 3, SES 3, EFS 1.
    push_all(&mut g821, &[severe(), severe(), severe(), clean()]);
    // 6. twelve seconds without sync: unavailable (10 enter, 2 continue).
    push_all(&mut g821, &[lost(); 12]);
    // 7. five clean seconds: undecided; a summary now keeps them unavailable.
    push_all(&mut g821, &[clean(); 5]);
    let want = G821Summary {
        seconds: 49,
        available_seconds: 19,
        unavailable_seconds: 30,
        errored_seconds: 6,
        severely_errored_seconds: 4,
        error_free_seconds: 13,
    };
    let got = g821.summary();
    assert_eq!(got, want);
    assert!((got.es_percent() - 600.0 / 19.0).abs() < 1e-9);
    assert!((got.ses_percent() - 400.0 / 19.0).abs() < 1e-9);
    assert!(g821.is_unavailable());
    // 8. five more clean: ten non-SES, so all ten become available error-free seconds.
    push_all(&mut g821, &[clean(); 5]);
    let want = G821Summary {
        seconds: 54,
        available_seconds: 29,
        unavailable_seconds: 25,
        errored_seconds: 6,
        severely_errored_seconds: 4,
        error_free_seconds: 23,
    };
    assert_eq!(g821.summary(), want);
    assert!(!g821.is_unavailable());
}

#[test]
fn a_short_ses_tail_counts_as_available_until_it_reaches_ten() {
    let mut g821 = G821::new();
    push_all(&mut g821, &[clean(); 3]);
    push_all(&mut g821, &[severe(); 9]);
    let mid = g821.summary();
    assert_eq!(
        (mid.available_seconds, mid.severely_errored_seconds),
        (12, 9)
    );
    assert_eq!(mid.unavailable_seconds, 0);
    g821.push(severe());
    let after = g821.summary();
    assert_eq!(
        (after.available_seconds, after.unavailable_seconds),
        (3, 10)
    );
    assert_eq!(after.severely_errored_seconds, 0);
    assert_eq!(after.es_percent(), 0.0);
}

#[test]
fn ses_threshold_is_a_ber_of_one_in_a_thousand() {
    let at = SecondTally {
        bits: BITS,
        bit_errors: 1000,
        sync_loss: false,
    };
    let below = SecondTally {
        bits: BITS,
        bit_errors: 999,
        sync_loss: false,
    };
    assert!(at.is_severely_errored());
    assert!(!below.is_severely_errored());
    assert!(below.is_errored());
    assert!(!clean().is_errored());
    assert!(lost().is_severely_errored());
    // Empty test: no percentages to speak of, and no division by zero.
    let empty = G821::new().summary();
    assert_eq!((empty.es_percent(), empty.ses_percent()), (0.0, 0.0));
}

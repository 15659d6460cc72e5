//! G.826 accounting on a scripted schedule, against values worked out by hand.

use loopscope_pattern::g826::{BlockSecond, G826};

/// ESF: 8000 frames / 24 = 333 whole blocks a second.
const BLOCKS: u64 = 333;

fn clean() -> BlockSecond {
    BlockSecond {
        blocks: BLOCKS,
        errored_blocks: 0,
        defect: false,
    }
}

fn errored(blocks: u64) -> BlockSecond {
    BlockSecond {
        blocks: BLOCKS,
        errored_blocks: blocks,
        defect: false,
    }
}

fn out_of_frame(blocks: u64, errored_blocks: u64) -> BlockSecond {
    BlockSecond {
        blocks,
        errored_blocks,
        defect: true,
    }
}

#[test]
fn scripted_schedule_matches_hand_computed_figures() {
    // Second by second (1-based):
    //  1-5   clean
    //  6     4 EB                      ES, BBE 4
    //  7     99 EB (29.7%)             ES, not SES, BBE 99
    //  8     100 EB (30.03%)           ES, SES (its EB are not background)
    //  9     OOF, 200 blocks, 5 EB     ES, SES (a defect)
    //  10-11 clean
    //  12-21 OOF, no blocks            10 SES: unavailable from second 12
    //  22-24 clean                     unavailable (the non-SES run is broken at 25)
    //  25    OOF                       unavailable
    //  26    7 EB, then 27-35 clean    10 non-SES: available again from second 26; ES, BBE 7
    //  36    2 EB                      ES, BBE 2
    //  37-39 333 EB (100%)             SES; 3 trailing SES stay available (< 10)
    let mut schedule = Vec::new();
    schedule.extend(std::iter::repeat_n(clean(), 5));
    schedule.push(errored(4));
    schedule.push(errored(99));
    schedule.push(errored(100));
    schedule.push(out_of_frame(200, 5));
    schedule.extend(std::iter::repeat_n(clean(), 2));
    schedule.extend(std::iter::repeat_n(out_of_frame(0, 0), 10));
    schedule.extend(std::iter::repeat_n(clean(), 3));
    schedule.push(out_of_frame(0, 0));
    schedule.push(errored(7));
    schedule.extend(std::iter::repeat_n(clean(), 9));
    schedule.push(errored(2));
    schedule.extend(std::iter::repeat_n(errored(BLOCKS), 3));
    assert_eq!(schedule.len(), 39);

    let mut g826 = G826::new();
    for (index, second) in schedule.iter().enumerate() {
        g826.push(*second);
        let second_number = index + 1;
        let s = g826.summary();
        match second_number {
            // Seconds 12-15 are 4 SES in a run that may yet reach 10: counted as available.
            15 => {
                assert_eq!((s.uas, s.ses, s.es), (0, 6, 8), "after 15");
                assert!(!g826.is_unavailable());
            }
            // The 10th SES makes seconds 12-21 unavailable, retroactively.
            21 => {
                assert_eq!((s.uas, s.ses, s.es), (10, 2, 4), "after 21");
                assert!(g826.is_unavailable());
            }
            // Seconds 26-30: 5 non-SES in unavailable time, still unavailable.
            30 => {
                assert_eq!((s.uas, s.available_seconds), (19, 11), "after 30");
                assert!(g826.is_unavailable());
            }
            // The 10th non-SES second (35) makes 26-35 available again.
            35 => {
                assert_eq!((s.uas, s.available_seconds), (14, 21), "after 35");
                assert!(!g826.is_unavailable());
            }
            _ => {}
        }
    }

    let s = g826.summary();
    assert_eq!(s.seconds, 39);
    assert_eq!(s.uas, 14, "seconds 12-25");
    assert_eq!(s.available_seconds, 25);
    assert_eq!(s.es, 9, "seconds 6, 7, 8, 9, 26, 36, 37, 38, 39");
    assert_eq!(s.ses, 5, "seconds 8, 9, 37, 38, 39");
    assert_eq!(s.eb, 4 + 99 + 100 + 5 + 7 + 2 + 3 * 333);
    assert_eq!(s.bbe, 4 + 99 + 7 + 2);
    assert_eq!(s.blocks, 24 * 333 + 200);
    assert_eq!(s.bbe_blocks, 20 * 333, "the 20 available non-SES seconds");
    assert_eq!(s.esr, 9.0 / 25.0);
    assert_eq!(s.sesr, 5.0 / 25.0);
    assert_eq!(s.bber, 112.0 / 6660.0);
}

#[test]
fn the_thirty_percent_line_is_exact() {
    // E1 CRC-4: 1000 blocks a second; 300 errored is 30%.
    let at = |eb| BlockSecond {
        blocks: 1000,
        errored_blocks: eb,
        defect: false,
    };
    assert!(!at(299).is_severely_errored());
    assert!(at(300).is_severely_errored());
    assert!(at(1).is_errored() && !at(0).is_errored());
    assert!(out_of_frame(0, 0).is_severely_errored());
}

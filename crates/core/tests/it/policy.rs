//! The length policy: the seed's numbers and its invariants.

use corpusgen_core::{
    LengthPolicy, Selection, Target, char_len, join, select, split, splits_cleanly,
};
use proptest::prelude::*;

use crate::support::{SEED_GPT41_LENGTHS, chars};

const SEPARATOR_CHARS: u64 = 4;

fn check(
    lengths: &[u64],
    target: Target,
    policy: LengthPolicy,
    expected: Option<(usize, u64, u64)>,
) {
    let selection = select(lengths, &target, policy, SEPARATOR_CHARS);
    let expected = expected.map(|(responses, response_chars, joined_chars)| Selection {
        responses,
        response_chars,
        joined_chars,
    });
    assert_eq!(
        selection, expected,
        "lengths {lengths:?}, target {target:?}, {policy:?}"
    );
}

#[test]
fn seed_gpt41_run_stops_after_six_responses_at_10034_chars() {
    let lengths = SEED_GPT41_LENGTHS.map(|length| length as u64);
    check(
        &lengths,
        chars(9164),
        LengthPolicy::AtLeast,
        Some((6, 10014, 10034)),
    );
    // With only the first five, the seed's loop would still have been running.
    check(&lengths[..5], chars(9164), LengthPolicy::AtLeast, None);
}

#[test]
fn seed_hand_curated_ten_join_to_9164_chars() {
    let explanations = corpusgen_testkit::seed_explanations();
    assert_eq!(explanations.len(), 10);
    let corpus = join(&explanations, "^^^^");
    assert_eq!(char_len(&corpus), 9164);
    assert_eq!(corpus.len(), 9242, "UTF-8 bytes differ from chars");
    assert_eq!(split(&corpus, "^^^^"), explanations);
}

#[test]
fn texts_that_would_blur_the_separator_do_not_split_cleanly() {
    for (text, separator, expected) in [
        ("plain text", "^^^^", true),
        // Conservative: an empty text makes the two separators around it overlap.
        ("", "^^^^", false),
        ("a ^^^ b", "^^^^", true),
        ("a ^^^^ b", "^^^^", false),
        ("ends with a caret^", "^^^^", false),
        ("^starts with a caret", "^^^^", false),
        ("x", "aba", true),
        ("b", "aba", false),
        ("éé", "é", false),
    ] {
        assert_eq!(
            splits_cleanly(text, separator),
            expected,
            "{text:?} with {separator:?}"
        );
    }
}

#[test]
fn policies_on_small_cases() {
    use LengthPolicy::{AtLeast, Closest};
    // Sums 10, 20, 30; joined 10, 24, 38.
    check(&[10, 10, 10], chars(20), AtLeast, Some((2, 20, 24)));
    check(&[10, 10, 10], chars(20), Closest, Some((2, 20, 24)));
    // Target 15: one response is 5 under, two joined are 9 over.
    check(&[10, 10, 10], chars(15), Closest, Some((1, 10, 10)));
    // Target 31: joined 24 is 7 under, 38 is 7 over; a tie keeps the longer.
    check(&[10, 10, 10], chars(31), Closest, Some((3, 30, 38)));
    // Target 30: at-least needs all three (sum 30); for closest, joined 24 is
    // 6 under and joined 38 is 8 over, so the shorter wins.
    check(&[10, 10, 10], chars(30), Closest, Some((2, 20, 24)));
    check(&[10, 10, 10], chars(30), AtLeast, Some((3, 30, 38)));
    // The first response alone can be the answer.
    check(&[50], chars(20), Closest, Some((1, 50, 50)));
    check(&[10, 10], chars(100), AtLeast, None);
    check(
        &[10, 10, 10],
        Target::Count { responses: 2 },
        Closest,
        Some((2, 20, 24)),
    );
    check(&[10], Target::Count { responses: 2 }, AtLeast, None);
}

proptest! {
    #[test]
    fn split_inverts_join_for_texts_that_split_cleanly(
        texts in prop::collection::vec("[a-zé ^]{0,30}", 1..12),
        separator in prop::sample::select(vec!["^^^^", "^", "ab", "aba", "\n\n"]),
    ) {
        let texts: Vec<String> = texts.into_iter().filter(|text| splits_cleanly(text, separator)).collect();
        prop_assume!(!texts.is_empty());
        let corpus = join(&texts, separator);
        prop_assert_eq!(split(&corpus, separator), texts.iter().map(String::as_str).collect::<Vec<_>>());
    }

    #[test]
    fn at_least_takes_the_shortest_sufficient_prefix(
        lengths in prop::collection::vec(0u64..3000, 1..40),
        target in 1u64..40_000,
    ) {
        let selection = select(&lengths, &chars(target), LengthPolicy::AtLeast, SEPARATOR_CHARS);
        let total: u64 = lengths.iter().sum();
        match selection {
            None => prop_assert!(total < target),
            Some(selection) => {
                let k = selection.responses;
                prop_assert!(lengths[..k].iter().sum::<u64>() >= target);
                prop_assert!(lengths[..k - 1].iter().sum::<u64>() < target);
                prop_assert_eq!(selection.response_chars, lengths[..k].iter().sum::<u64>());
                prop_assert_eq!(selection.joined_chars, selection.response_chars + SEPARATOR_CHARS * (k as u64 - 1));
            }
        }
    }

    #[test]
    fn closest_is_never_farther_from_the_target_than_at_least(
        lengths in prop::collection::vec(1u64..3000, 1..40),
        target in 1u64..40_000,
    ) {
        let at_least = select(&lengths, &chars(target), LengthPolicy::AtLeast, SEPARATOR_CHARS);
        let closest = select(&lengths, &chars(target), LengthPolicy::Closest, SEPARATOR_CHARS);
        if let Some(at_least) = at_least {
            let closest = closest.expect("closest decides no later than at-least");
            prop_assert!(closest.responses <= at_least.responses);
            prop_assert!(closest.joined_chars.abs_diff(target) <= at_least.joined_chars.abs_diff(target));
        }
    }
}

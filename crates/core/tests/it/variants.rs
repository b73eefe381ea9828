//! The variant plan: balanced, deterministic for a seed, different across seeds.

use corpusgen_core::variants::{Axis, built_in_axis, counts, variant};
use proptest::prelude::*;

fn axes() -> Vec<Axis> {
    ["audience", "style", "format"]
        .iter()
        .map(|name| built_in_axis(name).unwrap())
        .collect()
}

proptest! {
    #[test]
    fn every_prefix_is_balanced_on_every_axis(seed in any::<u64>(), requests in 1u64..400) {
        for (axis, by_value) in counts((0..requests).map(|index| variant(&axes(), seed, index))) {
            let size = axes().iter().find(|a| a.name == axis).unwrap().values.len() as u64;
            let least = if by_value.len() as u64 == size { *by_value.values().min().unwrap() } else { 0 };
            let most = *by_value.values().max().unwrap();
            prop_assert!(most - least <= 1, "{axis}: {by_value:?}");
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
    let plan = |seed| {
        (0..50)
            .map(|index| variant(&axes(), seed, index).label())
            .collect::<Vec<_>>()
    };
    assert_eq!(plan(7), plan(7));
    assert_ne!(plan(7), plan(8));
    // Rounds are reshuffled: the second round of formats is not the first again.
    let formats: Vec<String> = (0..60)
        .map(|index| variant(&axes(), 7, index).values[2].1.clone())
        .collect();
    let rounds: Vec<&[String]> = formats.chunks(6).collect();
    assert!(rounds.windows(2).any(|pair| pair[0] != pair[1]));
}

#[test]
fn a_variant_fills_its_placeholders() {
    let variant = variant(&axes(), 1, 0);
    let filled = variant.fill("for {audience}, as {style}, in {format}");
    assert!(!filled.contains('{'), "{filled}");
    for (_, value) in &variant.values {
        assert!(filled.contains(value.as_str()));
    }
}

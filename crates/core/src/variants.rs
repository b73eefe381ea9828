//! The variant plan: which audience, style and format request slot i asks
//! for, so an automated corpus varies the way the seed's hand-curated one does
//! ("simple and friendly", "technical and precise", "for engineers", ...).
//!
//! The walk is balanced on every prefix: on each axis, every value is used
//! once per round of that axis, in an order shuffled anew each round from the
//! job's seed. So over any number of requests the counts of an axis's values
//! differ by at most one, and the same seed gives the same plan.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The axes a prompt can vary along, with their values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Axis {
    /// The placeholder name: `{audience}` in a prompt.
    pub name: String,
    pub values: Vec<String>,
}

/// The values one request asks for, axis by axis, in the plan's axis order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    pub values: Vec<(String, String)>,
}

/// The built-in audiences, from the seed's ten hand-curated versions.
pub const AUDIENCES: &[&str] = &[
    "a newcomer with no background in machine learning",
    "an engineer who will implement it",
    "a product team or an executive",
    "a graduate student in machine learning",
    "a curious high-school student",
];

/// The built-in styles, from the seed's ten hand-curated versions.
pub const STYLES: &[&str] = &[
    "simple and friendly",
    "technical and precise",
    "metaphor-driven",
    "an academic summary",
    "a jargon-free analogy",
    "a one-line summary followed by an expansion",
    "a critical comparison with the alternatives",
];

/// The built-in formats: the seed's notebook wants "not just paragraph form".
pub const FORMATS: &[&str] = &[
    "paragraphs",
    "a bulleted list",
    "numbered steps",
    "questions and answers",
    "a worked example",
    "paragraphs with the math written in LaTeX",
];

/// The axes `--diversify` knows without a config file.
pub fn built_in_axis(name: &str) -> Option<Axis> {
    let values = match name {
        "audience" => AUDIENCES,
        "style" => STYLES,
        "format" => FORMATS,
        _ => return None,
    };
    Some(Axis {
        name: name.to_string(),
        values: values.iter().map(|value| value.to_string()).collect(),
    })
}

/// The user prompt used with `--diversify` unless `--prompt` gives one: the
/// seed's `Explain {topic}` with a clause per axis that is on.
pub fn diversified_prompt(axes: &[Axis]) -> String {
    let mut prompt = String::from("Explain {topic}");
    for axis in axes {
        prompt.push_str(&match axis.name.as_str() {
            "audience" => " for {audience}".to_string(),
            "style" => ", in the style of {style}".to_string(),
            "format" => ", written as {format}".to_string(),
            other => format!(", {other}: {{{other}}}"),
        });
    }
    prompt.push('.');
    prompt
}

/// The variant of slot `index` under `seed`.
pub fn variant(axes: &[Axis], seed: u64, index: u64) -> Variant {
    Variant {
        values: axes
            .iter()
            .enumerate()
            .map(|(position, axis)| {
                let size = axis.values.len() as u64;
                let round = index / size;
                let order = shuffled(size, seed, position as u64, round);
                let value = &axis.values[order[(index % size) as usize] as usize];
                (axis.name.clone(), value.clone())
            })
            .collect(),
    }
}

/// How often each value of each axis occurs among `variants`.
pub fn counts(
    variants: impl IntoIterator<Item = Variant>,
) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for variant in variants {
        for (axis, value) in variant.values {
            *counts.entry(axis).or_default().entry(value).or_default() += 1;
        }
    }
    counts
}

impl Variant {
    /// Fills the variant's placeholders in a template.
    pub fn fill(&self, template: &str) -> String {
        let mut filled = template.to_string();
        for (axis, value) in &self.values {
            filled = filled.replace(&format!("{{{axis}}}"), value);
        }
        filled
    }

    /// The label recorded in the journal: `audience=...; style=...`.
    pub fn label(&self) -> String {
        self.values
            .iter()
            .map(|(axis, value)| format!("{axis}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The order of an axis's values in one round: a Fisher-Yates shuffle seeded
/// by the job's seed, the axis and the round, so rounds differ.
fn shuffled(size: u64, seed: u64, axis: u64, round: u64) -> Vec<u64> {
    let mut rng = fastrand::Rng::with_seed(
        seed ^ axis.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ round.wrapping_mul(0xC2B2_AE3D_27D4_EB4F),
    );
    let mut order: Vec<u64> = (0..size).collect();
    rng.shuffle(&mut order);
    order
}

//! `corpusgen stats`: a corpus's counts, lengths and diversity scores, as a
//! table or as JSON whose keys scripts rely on.

use std::path::Path;

use corpusgen_core::split;
use corpusgen_core::stats::{CorpusStats, corpus_stats};

use crate::args::StatsArgs;
use crate::exit::CliError;

pub fn run(args: &StatsArgs) -> Result<(), CliError> {
    if args.separator.is_empty() {
        return Err(CliError::bad_input(
            "the separator is empty, so the corpus cannot be split; pass a non-empty --separator",
        ));
    }
    let corpus = measure(&args.file, &args.separator)?;
    let reference = args
        .reference
        .as_deref()
        .map(|path| measure(path, &args.separator))
        .transpose()?;
    if args.json {
        let value = match &reference {
            Some(reference) => serde_json::json!({"corpus": corpus, "reference": reference}),
            None => serde_json::to_value(&corpus).expect("stats serialize"),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("stats serialize")
        );
        return Ok(());
    }
    print!("{}", table(&corpus, reference.as_ref()));
    Ok(())
}

fn measure(path: &Path, separator: &str) -> Result<CorpusStats, CliError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        CliError::bad_input(format!("cannot read the corpus {}: {err}", path.display()))
    })?;
    Ok(corpus_stats(&split(&text, separator)))
}

/// The scores side by side, three decimals as the `diversity` package rounds.
fn table(corpus: &CorpusStats, reference: Option<&CorpusStats>) -> String {
    let reference_cells = reference.map(cells);
    let mut out = match reference {
        Some(_) => format!("{:<32} {:>12} {:>12}\n", "metric", "corpus", "reference"),
        None => format!("{:<32} {:>12}\n", "metric", "corpus"),
    };
    for (row, (name, value)) in cells(corpus).into_iter().enumerate() {
        match &reference_cells {
            Some(cells) => out.push_str(&format!("{name:<32} {value:>12} {:>12}\n", cells[row].1)),
            None => out.push_str(&format!("{name:<32} {value:>12}\n")),
        }
    }
    out
}

fn cells(stats: &CorpusStats) -> Vec<(&'static str, String)> {
    let score = |value: f64| format!("{value:.3}");
    vec![
        ("count", stats.count.to_string()),
        ("chars total", stats.chars.total.to_string()),
        ("chars min", stats.chars.min.to_string()),
        ("chars mean", format!("{:.1}", stats.chars.mean)),
        ("chars max", stats.chars.max.to_string()),
        ("words", stats.words.to_string()),
        ("compression ratio", score(stats.compression_ratio)),
        (
            "compression ratio (single gzip)",
            score(stats.compression_ratio_single_gzip),
        ),
        ("n-gram diversity", score(stats.ngram_diversity)),
        ("self-repetition", score(stats.self_repetition)),
        (
            "homogenization (ROUGE-L)",
            score(stats.homogenization_rougel),
        ),
        ("self-BLEU-4", score(stats.self_bleu4)),
        ("distinct-1", score(stats.distinct_1)),
        ("distinct-2", score(stats.distinct_2)),
        ("distinct-3", score(stats.distinct_3)),
    ]
}

//! What a job costs: token usage times the model's price, and the
//! `--budget-usd` bound the job loop keeps to.
//!
//! The price table itself belongs to the command line (it is configuration);
//! the loop is handed one resolved `Pricing`.

use serde::Serialize;

use crate::manifest::Totals;

/// USD per million tokens, as OpenAI publishes its prices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

/// Where a price came from, for the manifest and the dry-run plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    /// corpusgen's built-in table, checked on this date (YYYY-MM-DD).
    BuiltIn { checked: &'static str },
    /// A `[prices."MODEL"]` table of the config file.
    ConfigFile,
    /// A local server: nothing is billed.
    LocalServer,
}

/// The price a job's tokens are charged at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pricing {
    pub price: Price,
    pub source: PriceSource,
}

/// The manifest's `prices` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestPrices {
    pub model: String,
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub source: String,
}

impl Price {
    /// The USD cost of these token counts.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.input_per_mtok
            + completion_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

impl std::fmt::Display for PriceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PriceSource::BuiltIn { checked } => write!(f, "built-in table of {checked}"),
            PriceSource::ConfigFile => f.write_str("config file"),
            PriceSource::LocalServer => f.write_str("local server, not billed"),
        }
    }
}

impl Pricing {
    pub fn manifest_prices(&self, model: &str) -> ManifestPrices {
        ManifestPrices {
            model: model.to_string(),
            input_per_mtok: self.price.input_per_mtok,
            output_per_mtok: self.price.output_per_mtok,
            source: self.source.to_string(),
        }
    }

    /// The cost of a job's responses so far, from the usage its provider
    /// reported; `None` when that cost cannot be known.
    ///
    /// With one explanation per call every response must carry usage. With
    /// `--per-request` only the first response of a call does, so some usage
    /// must be there. A local server costs nothing whatever it reports.
    pub fn cost_of(&self, totals: &Totals, per_request: u32) -> Option<f64> {
        if self.source == PriceSource::LocalServer || totals.responses_received == 0 {
            return Some(0.0);
        }
        let complete = match per_request {
            0 | 1 => totals.responses_with_usage == totals.responses_received,
            _ => totals.responses_with_usage > 0,
        };
        complete.then(|| {
            self.price
                .cost(totals.prompt_tokens, totals.completion_tokens)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPT41: Price = Price {
        input_per_mtok: 2.0,
        output_per_mtok: 8.0,
    };

    fn totals(received: u64, with_usage: u64, prompt: u64, completion: u64) -> Totals {
        Totals {
            responses_received: received,
            responses_with_usage: with_usage,
            prompt_tokens: prompt,
            completion_tokens: completion,
            ..Totals::default()
        }
    }

    #[test]
    fn cost_is_usage_times_price() {
        let pricing = Pricing {
            price: GPT41,
            source: PriceSource::ConfigFile,
        };
        // 6 calls of 40 prompt and 300 completion tokens.
        let cost = pricing.cost_of(&totals(6, 6, 240, 1800), 1).unwrap();
        assert!((cost - (240.0 * 2.0 + 1800.0 * 8.0) / 1e6).abs() < 1e-12);
    }

    #[test]
    fn cost_is_unknown_when_a_response_lacks_usage() {
        let pricing = Pricing {
            price: GPT41,
            source: PriceSource::BuiltIn {
                checked: "2026-12-03",
            },
        };
        assert_eq!(pricing.cost_of(&totals(6, 5, 200, 1500), 1), None);
        // With --per-request, usage comes on the first response of a call.
        assert!(pricing.cost_of(&totals(6, 2, 80, 1800), 3).is_some());
        assert_eq!(pricing.cost_of(&totals(6, 0, 0, 0), 3), None);
        assert_eq!(pricing.cost_of(&totals(0, 0, 0, 0), 1), Some(0.0));
    }

    #[test]
    fn a_local_server_costs_nothing() {
        let pricing = Pricing {
            price: Price {
                input_per_mtok: 0.0,
                output_per_mtok: 0.0,
            },
            source: PriceSource::LocalServer,
        };
        assert_eq!(pricing.cost_of(&totals(3, 0, 0, 0), 1), Some(0.0));
    }
}

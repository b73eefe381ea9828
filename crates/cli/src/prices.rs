//! Model prices: a dated built-in table, overridden by the config file's
//! `[prices."MODEL"]` tables, and the cost of a finished job.
//!
//! A model without a price has an unknown cost: corpusgen says so and never
//! guesses one. A local server is free. A replay job is priced as the model it
//! names, so its cost is what the recorded usage would cost live.

use corpusgen_core::RunReport;
use corpusgen_core::cost::{Price, PriceSource, Pricing};

use crate::config::Config;
use crate::exit::CliError;
use crate::profiles::Kind;

/// The day the built-in table was last checked against OpenAI's published
/// standard-tier prices.
pub const PRICE_TABLE_CHECKED: &str = "2026-12-03";

/// USD per million input and output tokens, standard tier (not batch, not
/// cached input), as published on https://openai.com/api/pricing/ (also
/// https://platform.openai.com/docs/pricing). Dated snapshots of a model
/// (`gpt-4.1-2025-04-14`) take their model's price. Azure deployments have
/// names of their own: give them a `[prices."DEPLOYMENT"]` table.
pub const BUILT_IN_PRICES: &[(&str, Price)] = &[
    ("gpt-4.1", price(2.00, 8.00)),
    ("gpt-4.1-mini", price(0.40, 1.60)),
    ("gpt-4.1-nano", price(0.10, 0.40)),
    ("gpt-4o", price(2.50, 10.00)),
    ("gpt-4o-mini", price(0.15, 0.60)),
    ("o3", price(2.00, 8.00)),
    ("o4-mini", price(1.10, 4.40)),
    ("gpt-5", price(1.25, 10.00)),
    ("gpt-5-mini", price(0.25, 2.00)),
    ("gpt-5-nano", price(0.05, 0.40)),
];

const fn price(input_per_mtok: f64, output_per_mtok: f64) -> Price {
    Price {
        input_per_mtok,
        output_per_mtok,
    }
}

/// The built-in price of a model or of a dated snapshot of it.
pub fn built_in_price(model: &str) -> Option<Price> {
    let lookup = |name: &str| {
        BUILT_IN_PRICES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, price)| *price)
    };
    lookup(model).or_else(|| lookup(strip_snapshot_date(model)?))
}

/// `gpt-4.1-2025-04-14` -> `gpt-4.1`; `None` when the name ends in no date.
fn strip_snapshot_date(model: &str) -> Option<&str> {
    let (base, date) = model.split_at_checked(model.len().checked_sub(11)?)?;
    let date = date.strip_prefix('-')?;
    let is_date = date.len() == 10
        && date.char_indices().all(|(position, c)| match position {
            4 | 7 => c == '-',
            _ => c.is_ascii_digit(),
        });
    is_date.then_some(base)
}

/// The price a job's tokens are charged at: the config file's
/// `[prices."MODEL"]`, else free for a local server, else the built-in
/// table; `None` when the model has no known price.
pub fn pricing(kind: Kind, model: &str, config: &Config) -> Result<Option<Pricing>, CliError> {
    if let Some(entry) = config.file.prices.get(model) {
        let configured = entry.get_ref();
        for (name, value) in [
            ("input_per_mtok", configured.input_per_mtok),
            ("output_per_mtok", configured.output_per_mtok),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(CliError::bad_input(format!(
                    "{}: {name} = {value} is not a price; give USD per million tokens, 0 or more",
                    config.at(entry.span())
                )));
            }
        }
        return Ok(Some(Pricing {
            price: price(configured.input_per_mtok, configured.output_per_mtok),
            source: PriceSource::ConfigFile,
        }));
    }
    if kind == Kind::Local {
        return Ok(Some(Pricing {
            price: price(0.0, 0.0),
            source: PriceSource::LocalServer,
        }));
    }
    Ok(built_in_price(model).map(|price| Pricing {
        price,
        source: PriceSource::BuiltIn {
            checked: PRICE_TABLE_CHECKED,
        },
    }))
}

/// The USD cost of a finished job, `None` when it is unknown; for the job
/// file's summary.
pub fn job_cost(report: &RunReport) -> Option<f64> {
    report.manifest.totals.cost_usd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_take_their_model_s_price_and_unknown_models_have_none() {
        assert_eq!(built_in_price("gpt-4.1"), Some(price(2.0, 8.0)));
        assert_eq!(built_in_price("gpt-4.1-2025-04-14"), Some(price(2.0, 8.0)));
        assert_eq!(built_in_price("gpt-4.1-mini"), Some(price(0.4, 1.6)));
        assert_eq!(
            built_in_price("gpt-4.1-mini-2025-04-14"),
            Some(price(0.4, 1.6))
        );
        assert_eq!(built_in_price("gpt-4.1-preview"), None);
        assert_eq!(built_in_price("smollm2:135m"), None);
        assert_eq!(built_in_price(""), None);
    }

    #[test]
    fn a_local_server_is_free_and_the_config_file_wins() {
        let config = Config::default();
        let local = pricing(Kind::Local, "smollm2:135m", &config)
            .unwrap()
            .unwrap();
        assert_eq!(local.source, PriceSource::LocalServer);
        assert_eq!(local.price, price(0.0, 0.0));
        assert_eq!(pricing(Kind::Openai, "mystery", &config).unwrap(), None);
        let replay = pricing(Kind::Replay, "gpt-4o", &config).unwrap().unwrap();
        assert_eq!(replay.price, price(2.5, 10.0));

        let config = Config::parse(
            "corpusgen.toml".into(),
            "[prices.\"gpt-4o\"]\ninput_per_mtok = 1.0\noutput_per_mtok = 3.0\n".into(),
        )
        .unwrap();
        let configured = pricing(Kind::Openai, "gpt-4o", &config).unwrap().unwrap();
        assert_eq!(configured.source, PriceSource::ConfigFile);
        assert_eq!(configured.price, price(1.0, 3.0));
    }

    #[test]
    fn a_negative_configured_price_names_its_table() {
        let config = Config::parse(
            "corpusgen.toml".into(),
            "[prices.\"gpt-4o\"]\ninput_per_mtok = -1.0\noutput_per_mtok = 3.0\n".into(),
        )
        .unwrap();
        let err = pricing(Kind::Openai, "gpt-4o", &config).unwrap_err();
        assert!(
            err.message.starts_with("corpusgen.toml:1:1: "),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("input_per_mtok = -1"),
            "{}",
            err.message
        );
    }
}

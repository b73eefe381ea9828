//! The journal's crash behaviour: any torn tail resumes like the clean prefix.

use std::fs;

use corpusgen_core::journal::{JobHeader, Journal};
use corpusgen_core::{Event, RunOptions, run_job};
use proptest::prelude::*;

use crate::support::{chars, lengths_provider, seed_spec};

fn header(job_id: &str) -> JobHeader {
    JobHeader {
        job_id: job_id.into(),
        corpusgen_version: "test".into(),
        created: "2026-01-01T00:00:00Z".into(),
        spec: serde_json::Value::Null,
    }
}

/// A real journal of a ten-response job, as its lines.
fn journal_lines() -> (String, Vec<Vec<u8>>) {
    let folder = tempfile::tempdir().unwrap();
    let spec = seed_spec(&folder.path().join("out.txt"), chars(5000));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime
        .block_on(run_job(
            &spec,
            &lengths_provider(vec![500; 10]),
            RunOptions::default(),
            &mut |_: &Event| {},
        ))
        .unwrap();
    let bytes = fs::read(folder.path().join("out.jsonl")).unwrap();
    let lines = bytes
        .split_inclusive(|byte| *byte == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    (spec.job_id(), lines)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_prefix_with_any_torn_tail_recovers_as_the_clean_prefix(
        keep in 1usize..12,
        torn_fraction in 0.0f64..1.0,
    ) {
        let (job_id, lines) = journal_lines();
        let keep = keep.min(lines.len() - 1);
        let clean: Vec<u8> = lines[..keep].concat();
        let next = &lines[keep];
        // Any strict prefix of the next line, as a crash mid-write leaves it.
        let torn_len = ((next.len() - 1) as f64 * torn_fraction) as usize;
        let mut torn = clean.clone();
        torn.extend_from_slice(&next[..torn_len]);

        let folder = tempfile::tempdir().unwrap();
        let clean_path = folder.path().join("clean.jsonl");
        let torn_path = folder.path().join("torn.jsonl");
        fs::write(&clean_path, &clean).unwrap();
        fs::write(&torn_path, &torn).unwrap();
        let (_, from_clean) = Journal::open(&clean_path, &header(&job_id), false, false).unwrap();
        let (_, from_torn) = Journal::open(&torn_path, &header(&job_id), false, false).unwrap();

        prop_assert_eq!(&from_torn.responses, &from_clean.responses);
        prop_assert_eq!(from_torn.truncated_bytes, torn_len as u64);
        prop_assert_eq!(fs::read(&torn_path).unwrap(), fs::read(&clean_path).unwrap());
    }
}

#[test]
fn damage_before_the_last_line_is_refused_with_its_line_number() {
    let (job_id, lines) = journal_lines();
    let mut damaged = lines.clone();
    damaged[2] = b"{not json}\n".to_vec();
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("damaged.jsonl");
    fs::write(&path, damaged.concat()).unwrap();
    let err = Journal::open(&path, &header(&job_id), false, false).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("damaged at line 3"), "{message}");
    assert!(message.contains("--fresh"), "{message}");
}

//! Keys never reach a file of the repo: every fake key the tests use is
//! recognisable, and no snapshot or fixture may contain one.

use std::path::Path;

use corpusgen_testkit::workspace_root;

/// Prefixes of the fake keys used anywhere in the tests, and of real ones.
const KEY_MARKERS: &[&str] = &["sk-fake-", "sk-test-", "sk-proj-", "sk-svcacct-"];

fn visit(folder: &Path, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|name| name == "target" || name == ".git")
            {
                continue;
            }
            visit(&path, found);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "snap" || ext == "json" || ext == "jsonl")
        {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for marker in KEY_MARKERS {
                if text.contains(marker) {
                    found.push(format!("{} contains {marker}", path.display()));
                }
            }
        }
    }
}

#[test]
fn no_snapshot_or_fixture_contains_a_key() {
    let mut found = Vec::new();
    for folder in ["crates", "fixtures", "examples"] {
        visit(&workspace_root().join(folder), &mut found);
    }
    assert!(found.is_empty(), "{found:#?}");
}

//! The README's commands, run as written: every ```` ```sh ```` block right after a
//! `<!-- tested -->` line is run, in order, by one bash against a stack started as `./nene up`
//! starts it (the sandbox, the core in dev mode with the sandbox playing Toss and the login
//! providers, the Worker under `wrangler dev`). A command that fails — curl on a status of 400 or
//! more, or any other non-zero exit — fails the test, with the script's trace.
//!
//! Also: every repository path the documents name exists, so no document points a reader at a
//! file that is gone.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use nene_e2e::{Core, E2E_REDIRECT_URI, Sandbox, Wrangler, client, free_port, scratch_dir};

/// The line that marks the next shell block as run by this test.
const MARKER: &str = "<!-- tested -->";

/// Fewer blocks than this means the marker or the fences were broken, not that the README has
/// nothing to run.
const TESTED_BLOCKS_MIN: usize = 5;

/// What one curl may take: every call here answers in milliseconds on a started stack.
const CURL_SECONDS_MAX: u32 = 30;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

fn read(relative: &str) -> String {
    let path = repository_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ```` ```sh ```` blocks that follow a [`MARKER`] line, in order.
fn tested_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if line.trim() != MARKER {
            continue;
        }
        let fence = lines.next().unwrap_or_default();
        assert_eq!(
            fence.trim(),
            "```sh",
            "{MARKER} must be followed by a ```sh block"
        );
        let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        blocks.push(block.join("\n"));
    }
    blocks
}

#[test]
fn the_marker_picks_the_sh_block_after_it_and_nothing_else() {
    let markdown = "```sh\nnot this\n```\n<!-- tested -->\n```sh\necho a\necho b\n```\ntext\n\
                    <!-- tested -->\n```sh\necho c\n```\n";
    assert_eq!(tested_blocks(markdown), vec!["echo a\necho b", "echo c"]);
}

/// `host:port` of a base URL such as `http://127.0.0.1:4242`.
fn authority(url: &str) -> &str {
    url.trim_start_matches("http://")
}

#[tokio::test]
async fn every_tested_command_of_the_readme_succeeds_against_a_fresh_stack() {
    let blocks = tested_blocks(&read("README.md"));
    assert!(
        blocks.len() >= TESTED_BLOCKS_MIN,
        "found {} tested blocks in README.md",
        blocks.len()
    );

    let dir = scratch_dir("readme");
    let sandbox = Sandbox::start(&dir).await;
    let edge_port = free_port();
    let edge_url = format!("http://127.0.0.1:{edge_port}");
    let core = Core::start_with(&dir, Some(&sandbox.url), Some(&edge_url)).await;
    let wrangler = Wrangler::start_on(edge_port, &core.url, &dir.join("state"), &dir).await;
    // As `./nene up`: Toss's webhooks reach the edge.
    let webhook = client()
        .put(format!("{}/sandbox/toss/webhook", sandbox.url))
        .json(&serde_json::json!({ "url": format!("{edge_url}/webhooks/toss"), "retryUnitMs": 20 }))
        .send()
        .await
        .unwrap();
    assert!(webhook.status().is_success(), "{}", webhook.status());

    // The README speaks of `./nene up`'s addresses; this stack has its own. The end-to-end core
    // lets logins return to E2E_REDIRECT_URI only, where `./nene up`'s allows its own edge's.
    let replacements = [
        ("http://127.0.0.1:8787/auth/done", E2E_REDIRECT_URI),
        ("localhost:8787", authority(&wrangler.url)),
        ("localhost:8090", authority(&sandbox.url)),
        ("localhost:8081", authority(&core.url)),
    ];
    let mut script = format!(
        "set -euo pipefail -o xtrace\n\
         curl() {{ command curl --fail-with-body --max-time {CURL_SECONDS_MAX} \"$@\"; }}\n"
    );
    for block in &blocks {
        let mut block = block.clone();
        for (readme, here) in replacements {
            block = block.replace(readme, here);
        }
        for port in [":8787", ":8090", ":8081"] {
            assert!(
                !block.contains(port),
                "a README address this test cannot map: {block}"
            );
        }
        script.push_str(&block);
        script.push('\n');
    }

    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&dir)
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the README's commands failed ({}):\n--- output\n{stdout}\n--- trace\n{stderr}\n\
         --- core\n{}\n--- wrangler\n{}",
        output.status,
        core.process.log_tail(),
        wrangler.process.log_tail()
    );
    // The last block's answers say the walk did what the README says it does.
    assert!(stdout.contains("\"CANCELED\""), "{stdout}");
}

/// A path in backticks that names something in the repository: it starts with one of the
/// repository's top-level entries.
fn repository_path(span: &str) -> Option<&str> {
    const TOP_LEVEL: [&str; 12] = [
        "domain/",
        "edge/",
        "durable/",
        "core-service/",
        "sandbox/",
        "tests/",
        "docs/",
        "scripts/",
        "tools/",
        ".ci/",
        "ARCHITECTURE.md",
        "README.md",
    ];
    // Build output, not source: made by `scripts/build-edge.sh`.
    const GENERATED: [&str; 1] = ["edge/build/"];
    let path = span.split([' ', ':', '`', ',', '(']).next()?;
    let named = TOP_LEVEL.iter().any(|top| path.starts_with(top))
        && !GENERATED
            .iter()
            .any(|generated| path.starts_with(generated))
        && !path.contains(['*', '{', '…']);
    named.then_some(path)
}

/// The inline code spans of a markdown text, fenced blocks left out. A span may continue on the
/// next line, never past a paragraph.
fn inline_code(markdown: &str) -> Vec<String> {
    let mut prose = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            prose.push('\n');
        } else if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    prose
        .split("\n\n")
        .flat_map(|paragraph| {
            paragraph
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|span| span.replace('\n', " "))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn inline_code_is_found_across_lines_and_not_in_fenced_blocks() {
    let markdown = "see `a/b.rs` and `c\nd`\n\n```sh\n`not/this`\n```\nthen `e/f`\n";
    assert_eq!(inline_code(markdown), vec!["a/b.rs", "c d", "e/f"]);
}

#[test]
fn every_path_the_documents_name_exists() {
    let mut documents = vec!["README.md".to_owned(), "ARCHITECTURE.md".to_owned()];
    for dir in ["docs", "docs/decisions"] {
        let entries =
            std::fs::read_dir(repository_root().join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".md") {
                documents.push(format!("{dir}/{name}"));
            }
        }
    }
    let mut missing = Vec::new();
    for document in &documents {
        for span in inline_code(&read(document)) {
            if let Some(path) = repository_path(&span)
                && !repository_root().join(path).exists()
            {
                missing.push(format!("{document}: {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "paths that do not exist:\n{}",
        missing.join("\n")
    );
}

//! The documentation stands on its own: every relative link in README.md and
//! docs/*.md names a file of the repository (and, with `#anchor`, a heading
//! of that file), and no tracked file points at a directory outside it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// README.md and every Markdown page under docs/.
fn pages() -> Vec<PathBuf> {
    let root = cti::workspace_root();
    let mut pages = vec![root.join("README.md")];
    let docs = std::fs::read_dir(root.join("docs")).expect("docs/ exists");
    for entry in docs {
        let path = entry.expect("read docs/").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages.sort();
    pages
}

/// The targets of the inline links `[text](target)` outside code blocks and
/// code spans.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Code spans are the odd-numbered pieces between backticks.
        for (i, piece) in line.split('`').enumerate() {
            if i % 2 == 1 {
                continue;
            }
            let mut rest = piece;
            while let Some(at) = rest.find("](") {
                rest = &rest[at + 2..];
                let Some(end) = rest.find(')') else { break };
                targets.push(rest[..end].trim().to_string());
                rest = &rest[end..];
            }
        }
    }
    targets
}

/// The anchor a heading gets on GitHub (and most Markdown renderers):
/// lowercase, punctuation dropped, spaces turned into hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of every heading of a Markdown file.
fn anchors(markdown: &str) -> HashSet<String> {
    let mut fenced = false;
    let mut found = HashSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            let text = line.trim_start_matches('#');
            found.insert(slug(&text.replace('`', "")));
        }
    }
    found
}

/// What is wrong with one link of `page`, if anything.
fn check(page: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
    let dest = if file.is_empty() {
        page.to_path_buf()
    } else {
        page.parent()?.join(file)
    };
    let root = cti::workspace_root().canonicalize().ok()?;
    match dest.canonicalize() {
        Err(_) => return Some(format!("{target}: no such file")),
        Ok(real) if !real.starts_with(&root) => {
            return Some(format!("{target}: outside the repository"))
        }
        Ok(_) => {}
    }
    if anchor.is_empty() || dest.extension().is_none_or(|e| e != "md") {
        return None;
    }
    let text = std::fs::read_to_string(&dest).ok()?;
    (!anchors(&text).contains(anchor)).then(|| format!("{target}: no heading #{anchor}"))
}

#[test]
fn every_relative_link_names_a_file_of_the_repository() {
    let mut broken = Vec::new();
    let mut links = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for target in link_targets(&text) {
            links += 1;
            if let Some(why) = check(&page, &target) {
                broken.push(format!("{}: {why}", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(links > 0, "no links found: the parser is broken");
}

#[test]
fn the_link_checker_finds_broken_links() {
    let readme = cti::workspace_root().join("README.md");
    assert_eq!(check(&readme, "docs/http.md"), None);
    assert_eq!(check(&readme, "https://ipv4.games"), None);
    assert!(check(&readme, "docs/no-such-page.md").is_some());
    assert!(check(&readme, "../README.md").is_some(), "outside");
    assert!(check(&readme, "docs/operations.md#no-such-heading").is_some());
    assert_eq!(
        link_targets("[a](x.md) `[b](y.md)` [c](z.md#q)\n```\n[d](w.md)\n```"),
        ["x.md", "z.md#q"]
    );
    assert_eq!(
        slug("Backup and restore (`VACUUM INTO`)"),
        "backup-and-restore-vacuum-into"
    );
}

#[test]
fn no_tracked_file_points_outside_the_repository() {
    let root = cti::workspace_root();
    if !root.join(".git").exists() {
        eprintln!("not a git checkout: skipped");
        return;
    }
    // Spelt in two pieces so that this file does not match itself.
    let outside = format!("{}/", "shared");
    let out = Command::new("git")
        .args(["grep", "-n", "--fixed-strings", &outside])
        .current_dir(root)
        .output()
        .expect("git grep");
    // git grep exits 1 when nothing matches.
    assert_eq!(
        out.status.code(),
        Some(1),
        "files naming {outside}:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

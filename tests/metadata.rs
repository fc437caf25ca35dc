//! The metadata packagers read: every crate declares the workspace's
//! `rust-version`, no locked dependency needs a newer Rust than it says, and
//! the Debian packaging agrees with Cargo on the toolchain and the version.
//! (Clippy's `incompatible_msrv` lint, denied in CI, holds the code itself to
//! the same `rust-version`.)

use std::process::Command;

fn metadata() -> serde_json::Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", env!("CTI_TARGET")])
        .current_dir(cti::workspace_root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `1.88` or `1.88.0` as comparable numbers.
fn version(v: &str) -> Vec<u32> {
    let mut parts: Vec<u32> = v.split('.').map(|p| p.parse().unwrap()).collect();
    parts.resize(3, 0);
    parts
}

fn workspace_rust_version(m: &serde_json::Value) -> String {
    let members = m["workspace_members"].as_array().unwrap();
    let declared: Vec<(String, Option<String>)> = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| members.contains(&p["id"]))
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["rust_version"].as_str().map(String::from),
            )
        })
        .collect();
    assert_eq!(declared.len(), members.len());
    let first = declared[0].1.clone();
    assert!(
        first.is_some() && declared.iter().all(|(_, v)| *v == first),
        "every crate must have `rust-version.workspace = true`: {declared:?}"
    );
    first.unwrap()
}

#[test]
fn every_crate_has_the_workspace_rust_version_and_dependencies_fit_it() {
    let m = metadata();
    let ours = workspace_rust_version(&m);
    let in_build: Vec<&serde_json::Value> = m["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["id"])
        .collect();
    let newer: Vec<String> = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| in_build.contains(&&p["id"]))
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            let (name, v) = (p["name"].as_str()?, p["version"].as_str()?);
            (version(needs) > version(&ours)).then(|| format!("{name} {v} needs {needs}"))
        })
        .collect();
    assert!(
        newer.is_empty(),
        "rust-version {ours} is below what Cargo.lock needs: {newer:?}"
    );
}

#[test]
fn debian_packaging_agrees_with_cargo() {
    let ours = workspace_rust_version(&metadata());
    let control = std::fs::read_to_string(cti::workspace_root().join("debian/control")).unwrap();
    assert!(
        control.contains(&format!("rustc (>= {ours}),")),
        "debian/control's Build-Depends must ask for rustc (>= {ours})"
    );
    let changelog =
        std::fs::read_to_string(cti::workspace_root().join("debian/changelog")).unwrap();
    let first = changelog.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("cti ({}-", env!("CARGO_PKG_VERSION"))),
        "debian/changelog's newest entry is not version {}: {first}",
        env!("CARGO_PKG_VERSION")
    );
}

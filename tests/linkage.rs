//! The declared dynamic link, as a packager would inspect it: the library's
//! SONAME carries the ABI major of `cti_abi_version()`, every binary needs
//! that SONAME, leaves the `cti_` functions undefined (so it did not link the
//! core statically) and finds the library through an `$ORIGIN` RUNPATH.

use std::process::Command;

fn tool(name: &str, args: &[&str]) -> String {
    let out = Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn soname() -> String {
    format!("libcti_core.so.{}", cti_ffi::abi_version().0)
}

#[test]
fn library_soname_matches_the_abi_version() {
    let lib = cti::core_library();
    let dynamic = tool("readelf", &["-d", lib.to_str().unwrap()]);
    assert!(
        dynamic.contains(&format!("Library soname: [{}]", soname())),
        "{dynamic}"
    );
    let link = lib.with_file_name(soname());
    assert!(
        link.exists(),
        "{} is missing beside the library",
        link.display()
    );
}

#[test]
fn library_exports_only_the_c_api() {
    let lib = cti::core_library();
    let defined = tool("nm", &["-D", "--defined-only", lib.to_str().unwrap()]);
    let names: Vec<&str> = defined
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert!(names.contains(&"cti_claim"), "{defined}");
    let foreign: Vec<_> = names.iter().filter(|n| !n.starts_with("cti_")).collect();
    assert!(foreign.is_empty(), "symbols outside the C API: {foreign:?}");
}

#[test]
fn binaries_link_the_core_dynamically() {
    for name in ["cti-server", "cti-edge"] {
        let bin = cti::binary(name);
        assert!(
            bin.exists(),
            "{} not built: run `cargo build --workspace` first",
            bin.display()
        );
        let path = bin.to_str().unwrap();
        let dynamic = tool("readelf", &["-d", path]);
        assert!(
            dynamic.contains(&format!("Shared library: [{}]", soname())),
            "{name}: {dynamic}"
        );
        assert!(
            dynamic.contains("$ORIGIN"),
            "{name} has no $ORIGIN RUNPATH: {dynamic}"
        );
        let symbols = tool("nm", &[path]);
        let core: Vec<&str> = symbols
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .last()
                    .is_some_and(|s| s.starts_with("cti_"))
            })
            .collect();
        assert!(!core.is_empty(), "{name} uses no cti_ function");
        assert!(
            core.iter().all(|l| l.trim_start().starts_with('U')),
            "{name} defines cti_ functions itself: {core:?}"
        );
        let ldd = tool("ldd", &[path]);
        let line = ldd
            .lines()
            .find(|l| l.contains("libcti_core"))
            .unwrap_or("");
        assert!(
            line.contains("=> /") && !line.contains("not found"),
            "{name}: {ldd}"
        );
    }
}

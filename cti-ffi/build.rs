//! Finds `libcti_core.so` for the linker. In order: `CTI_CORE_LIB_DIR`, an
//! installed `cti_core.pc` (pkg-config, only when `CTI_CORE_USE_PKG_CONFIG=1`),
//! then the `deps` directory of this build's profile, where cargo puts the
//! cdylib of the `cti-core` dependency.

use std::path::{Path, PathBuf};

include!("../build/rpath.rs");

fn main() {
    println!("cargo:rerun-if-env-changed=CTI_CORE_LIB_DIR");
    println!("cargo:rerun-if-env-changed=CTI_CORE_USE_PKG_CONFIG");
    let dir = from_env().or_else(from_pkg_config).or_else(from_build_tree).unwrap_or_else(|| {
        panic!(
            "cannot locate libcti_core.so: set CTI_CORE_LIB_DIR to the directory that holds it \
             (for example target/release/deps), or install cti_core.pc and set CTI_CORE_USE_PKG_CONFIG=1"
        )
    });
    println!("cargo:rustc-link-search=native={}", dir.display());
    // Tells dependents (through DEP_CTI_CORE_LIB_DIR) where the library is.
    println!("cargo:lib_dir={}", dir.display());
    // For this crate's own tests.
    emit_rpath();
}

fn from_env() -> Option<PathBuf> {
    std::env::var_os("CTI_CORE_LIB_DIR").map(PathBuf::from)
}

fn from_pkg_config() -> Option<PathBuf> {
    if std::env::var_os("CTI_CORE_USE_PKG_CONFIG").is_none_or(|v| v != "1") {
        return None;
    }
    let out = std::process::Command::new("pkg-config")
        .args(["--variable=libdir", "cti_core"])
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `OUT_DIR` is `<target>/<profile>/build/cti-ffi-<hash>/out`; the cdylib goes
/// to `<target>/<profile>/deps`. Walk up until a sibling `deps` appears, so a
/// changed layout in a newer cargo still has a chance before the override.
fn from_build_tree() -> Option<PathBuf> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR")?);
    out.ancestors()
        .skip(1)
        .find(|dir| dir.file_name().is_some_and(|n| n == "build") && has_deps(dir))
        .and_then(|build| build.parent())
        .map(|profile| profile.join("deps"))
}

fn has_deps(build_dir: &Path) -> bool {
    build_dir.parent().is_some_and(|p| p.join("deps").is_dir())
}

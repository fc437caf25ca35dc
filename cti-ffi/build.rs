//! Finds `libcti_core.so` for the linker. In order: `CTI_CORE_LIB_DIR`, an
//! installed `cti_core.pc` (pkg-config, only when `CTI_CORE_USE_PKG_CONFIG=1`),
//! then the `deps` directory of this build's profile, where cargo puts the
//! cdylib of the `cti-core` dependency.

use std::path::{Path, PathBuf};

include!("../build/rpath.rs");
include!("../build/abi_major.rs");

fn main() {
    println!("cargo:rerun-if-env-changed=CTI_CORE_LIB_DIR");
    println!("cargo:rerun-if-env-changed=CTI_CORE_USE_PKG_CONFIG");
    let found = from_env().or_else(from_pkg_config);
    let in_tree = found.is_none();
    let dir = found.or_else(from_build_tree).unwrap_or_else(|| {
        panic!(
            "cannot locate libcti_core.so: set CTI_CORE_LIB_DIR to the directory that holds it \
             (for example target/release/deps), or install cti_core.pc and set CTI_CORE_USE_PKG_CONFIG=1"
        )
    });
    if in_tree {
        link_soname(&dir);
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
    // Tells dependents (through DEP_CTI_CORE_LIB_DIR) where the library is.
    println!("cargo:lib_dir={}", dir.display());
    // For this crate's own tests.
    emit_rpath();
}

/// Binaries record the library's SONAME (`libcti_core.so.N`) as NEEDED, so
/// the build tree needs that name beside the file cargo writes. The link may
/// be made before the library is built; it resolves once it is.
fn link_soname(deps: &Path) {
    let major = abi_major(Path::new("../cti-core/src/abi.rs"));
    for dir in [
        deps.to_path_buf(),
        deps.parent().map(Path::to_path_buf).unwrap_or_default(),
    ] {
        let link = dir.join(format!("libcti_core.so.{major}"));
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("libcti_core.so", &link)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", link.display()));
        }
    }
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

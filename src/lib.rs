//! Test and bench support for the workspace: where the build put the core
//! library and the binaries. (The game itself lives in `cti-core`.)

use std::path::{Path, PathBuf};

/// `target/<profile>`, found from the running test or bench executable
/// (which cargo places in `target/<profile>/deps`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("exe has a directory");
    match deps.file_name() {
        Some(n) if n == "deps" => deps.parent().unwrap_or(deps).to_path_buf(),
        _ => deps.to_path_buf(),
    }
}

/// The built `libcti_core.so` (overridable with `CTI_CORE_LIB`).
pub fn core_library() -> PathBuf {
    if let Some(p) = std::env::var_os("CTI_CORE_LIB") {
        return PathBuf::from(p);
    }
    profile_dir().join("deps").join("libcti_core.so")
}

/// A workspace binary such as `cti-edge` in the same profile.
pub fn binary(name: &str) -> PathBuf {
    profile_dir().join(name)
}

/// The workspace root (this crate's manifest directory).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

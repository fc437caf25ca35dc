//! Build glue of the workspace: writes `include/cti_core.h` from the core's C
//! ABI (only when its content changes, so builds do not loop), and gives the
//! top-level tests and benches their RUNPATH.

use std::path::Path;

include!("build/rpath.rs");

fn main() {
    emit_rpath();
    // For tests that ask cargo about this target's dependencies.
    println!(
        "cargo:rustc-env=CTI_TARGET={}",
        std::env::var("TARGET").expect("TARGET")
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let abi = root.join("cti-core/src/abi.rs");
    let config_path = root.join("cbindgen.toml");
    println!("cargo:rerun-if-changed={}", abi.display());
    println!("cargo:rerun-if-changed={}", config_path.display());
    let config = cbindgen::Config::from_file(&config_path).expect("cbindgen.toml is valid");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(&abi)
        .generate()
        .expect("cbindgen could not read cti-core/src/abi.rs");
    let mut header = Vec::new();
    bindings.write(&mut header);
    let target = root.join("include/cti_core.h");
    if std::fs::read(&target).ok().as_deref() != Some(&header[..]) {
        std::fs::create_dir_all(root.join("include")).expect("create include/");
        std::fs::write(&target, header).expect("write include/cti_core.h");
    }
}

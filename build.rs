//! Build glue of the workspace: writes `include/cti_core.h` from the core's C
//! ABI (only when its content changes, so builds do not loop), renders
//! cti-ffi's `extern "C"` declarations as C for the ABI test to compile
//! against the header, and gives the top-level tests and benches their
//! RUNPATH.

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
    write_header(root);
    write_ffi_declarations(root);
}

fn write_header(root: &Path) {
    let abi = root.join("cti-core/src/abi.rs");
    let config_path = root.join("cbindgen.toml");
    println!("cargo:rerun-if-changed={}", abi.display());
    println!("cargo:rerun-if-changed={}", config_path.display());
    let config = cbindgen::Config::from_file(&config_path).expect("cbindgen.toml is valid");
    let header = render(config, &abi);
    let target = root.join("include/cti_core.h");
    if std::fs::read(&target).ok().as_deref() != Some(&header[..]) {
        std::fs::create_dir_all(root.join("include")).expect("create include/");
        std::fs::write(&target, header).expect("write include/cti_core.h");
    }
}

/// `$OUT_DIR/ffi_declarations.h`: the functions of cti-ffi's table
/// (`core_api!` in cti-ffi/src/api.rs, one `fn` line each) as C prototypes
/// naming the header's types, so that tests/abi.rs can have the C compiler
/// compare each one with the header's declaration.
fn write_ffi_declarations(root: &Path) {
    let api = root.join("cti-ffi/src/api.rs");
    println!("cargo:rerun-if-changed={}", api.display());
    let text = std::fs::read_to_string(&api).expect("read cti-ffi/src/api.rs");
    let start = text
        .find("\ncore_api! {")
        .expect("core_api! in cti-ffi/src/api.rs");
    let functions: String = text[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.trim() != "}")
        .map(|l| format!("    pub {}\n", l.trim()))
        .collect();
    // The types as api.rs defines them, then the table as an extern block.
    let source = format!("{text}\nextern \"C\" {{\n{functions}}}\n");
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let rust = out_dir.join("ffi_declarations.rs");
    std::fs::write(&rust, source).expect("write ffi_declarations.rs");
    let mut config = cbindgen::Config {
        language: cbindgen::Language::C,
        no_includes: true,
        ..Default::default()
    };
    // The structs come from the header; cti-ffi's own callback types are
    // rendered under names of their own and compared through the functions.
    config.export.exclude = [
        "CtiStore",
        "CtiSubscription",
        "Limits",
        "NickLimits",
        "Api",
        "Origin",
        "LoadError",
    ]
    .map(String::from)
    .into();
    config.export.rename.extend([
        ("Limits".to_string(), "CtiLimits".to_string()),
        ("NickLimits".to_string(), "CtiNickLimits".to_string()),
        (
            "ClaimCallback".to_string(),
            "CtiFfiClaimCallback".to_string(),
        ),
        (
            "EventCallback".to_string(),
            "CtiFfiEventCallback".to_string(),
        ),
    ]);
    std::fs::write(out_dir.join("ffi_declarations.h"), render(config, &rust))
        .expect("write ffi_declarations.h");
}

fn render(config: cbindgen::Config, src: &Path) -> Vec<u8> {
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(src)
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen could not read {}: {e}", src.display()));
    let mut out = Vec::new();
    bindings.write(&mut out);
    out
}

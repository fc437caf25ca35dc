// Shared by the build scripts of every crate that links libcti_core.so:
// included with `include!`, so there is one copy of the rule.

/// Gives this package's binaries and tests a `$ORIGIN`-relative RUNPATH so they
/// find `libcti_core.so` in the build tree (`$ORIGIN`, `$ORIGIN/deps`) and in
/// an installed tree (`$ORIGIN/../lib`) without `LD_LIBRARY_PATH`. Packagers
/// who install into the system library path turn it off with `CTI_NO_RPATH=1`.
fn emit_rpath() {
    println!("cargo:rerun-if-env-changed=CTI_NO_RPATH");
    if std::env::var_os("CTI_NO_RPATH").is_some_and(|v| v != "0") {
        return;
    }
    // `deps` first: cargo always writes the fresh library there, while the copy
    // beside the binaries is refreshed only when cti-core itself is built.
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/deps:$ORIGIN:$ORIGIN/../lib");
    // RUNPATH (not RPATH), so LD_LIBRARY_PATH still wins when a user sets it.
    println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags");
}

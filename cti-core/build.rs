//! Gives `libcti_core.so` its SONAME, `libcti_core.so.<ABI major>`, with the
//! major taken from `CTI_ABI_MAJOR` in `src/abi.rs` so that the two cannot
//! disagree. Binaries linked against it record the SONAME as NEEDED.

include!("../build/abi_major.rs");

fn main() {
    let major = abi_major(std::path::Path::new("src/abi.rs"));
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcti_core.so.{major}");
}

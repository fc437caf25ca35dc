//! RUNPATH for this crate's binaries and tests (see build/rpath.rs).

include!("../build/rpath.rs");

fn main() {
    emit_rpath();
}

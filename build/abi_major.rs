// Shared by build scripts (with `include!`): the ABI major version, read from
// `CTI_ABI_MAJOR` in cti-core/src/abi.rs, the one place it is defined.

/// Reads `pub const CTI_ABI_MAJOR: u32 = N;` from the given abi.rs.
fn abi_major(abi_rs: &std::path::Path) -> u32 {
    println!("cargo:rerun-if-changed={}", abi_rs.display());
    std::fs::read_to_string(abi_rs)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", abi_rs.display()))
        .lines()
        .find_map(|l| l.trim().strip_prefix("pub const CTI_ABI_MAJOR: u32 = "))
        .and_then(|rest| rest.trim_end_matches(';').parse().ok())
        .unwrap_or_else(|| panic!("{} must define `pub const CTI_ABI_MAJOR: u32 = N;`", abi_rs.display()))
}

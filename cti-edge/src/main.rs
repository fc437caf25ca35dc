fn main() {
    println!("cti-edge, core {}", cti_ffi::version());
}

fn main() {
    println!("cti-server, core {}", cti_ffi::version());
}

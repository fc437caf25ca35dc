//! The HTTP service of Capture The IP.
pub use cti_ffi::Store;

//! The edge of Capture The IP: PROXY protocol from trusted load balancers,
//! TLS in process, HTTP/1.1 and HTTP/2, around the `cti-server` service.

pub mod conn;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod rewind;
pub mod tls;

//! The edge of Capture The IP: PROXY protocol from trusted load balancers,
//! TLS in process, HTTP/1.1 and HTTP/2, around the `cti-server` service.

pub mod admin;
pub mod conn;
pub mod metrics;
pub mod proxy;
pub mod small_reads;
pub mod tls;
pub mod upgrade;

//! The gRPC edge: CheckRequest → request view → decision → CheckResponse, the tonic service,
//! the server plumbing (listeners, health, reflection, shutdown) and the proto3-JSON codec.

pub mod check;
pub mod descriptor;
pub mod explain;
pub mod explain_service;
pub mod limits;
pub mod request;
pub mod response;
pub mod server;
pub mod service;
pub mod settings;
pub mod short_form;
pub mod tls;

//! Where state comes from: local files (and, later, the Kubernetes API).

pub mod embedded;
pub mod file;

//! Where state comes from, besides the Kubernetes API (`k8s`): local YAML/JSON files and
//! directories (`file`), and the default state compiled into the binary (`embedded`).

pub mod embedded;
pub mod file;

//! The compiled descriptor set of Envoy's ext_authz API (built by `build.rs`), and the proto3
//! JSON mapping of CheckRequest / CheckResponse through it (what grpcurl sends and prints).

use std::sync::OnceLock;

use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage};

/// `FileDescriptorSet` of `envoy/service/auth/v3/external_auth.proto` and its imports.
pub static FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/envoy_authz_descriptor.bin"));

const CHECK_REQUEST: &str = "envoy.service.auth.v3.CheckRequest";
const CHECK_RESPONSE: &str = "envoy.service.auth.v3.CheckResponse";

/// Why a JSON message could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The built-in descriptor set is unusable (a build problem, never user input).
    #[error("descriptor set is unusable: {0}")]
    Descriptors(String),
    /// The JSON is not a valid message of the expected type.
    #[error("{0}")]
    Invalid(String),
}

/// The descriptor pool, built once.
pub fn pool() -> Result<&'static DescriptorPool, JsonError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(FILE_DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| JsonError::Descriptors(e.clone()))
}

fn message(name: &str) -> Result<prost_reflect::MessageDescriptor, JsonError> {
    pool()?
        .get_message_by_name(name)
        .ok_or_else(|| JsonError::Descriptors(format!("`{name}` is missing")))
}

/// Parses a CheckRequest from proto3 JSON (camelCase or original field names). Unknown fields
/// are errors.
pub fn check_request_from_json(json: &str) -> Result<CheckRequest, JsonError> {
    let desc = message(CHECK_REQUEST)?;
    let mut de = serde_json::Deserializer::from_str(json);
    let msg = DynamicMessage::deserialize_with_options(
        desc,
        &mut de,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|e| JsonError::Invalid(e.to_string()))?;
    de.end().map_err(|e| JsonError::Invalid(e.to_string()))?;
    CheckRequest::decode(msg.encode_to_vec().as_slice())
        .map_err(|e| JsonError::Invalid(e.to_string()))
}

/// Prints a CheckResponse as proto3 JSON (camelCase, defaults omitted).
pub fn check_response_to_json(resp: &CheckResponse) -> Result<String, JsonError> {
    let desc = message(CHECK_RESPONSE)?;
    let msg = DynamicMessage::decode(desc, resp.encode_to_vec().as_slice())
        .map_err(|e| JsonError::Invalid(e.to_string()))?;
    serde_json::to_string(&msg).map_err(|e| JsonError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_examples_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/examples/checkrequests");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let req = check_request_from_json(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(req.attributes.is_some(), "{}", path.display());
            n += 1;
        }
        assert!(n >= 4);
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = check_request_from_json(r#"{"attributes": {"sauce": {}}}"#).unwrap_err();
        assert!(e.to_string().contains("sauce"), "{e}");
    }

    #[test]
    fn original_field_names_are_accepted() {
        let r = check_request_from_json(
            r#"{"attributes": {"source": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}}}}"#,
        )
        .unwrap();
        assert!(r.attributes.and_then(|a| a.source).is_some());
    }

    #[test]
    fn not_json_is_an_error() {
        assert!(check_request_from_json("{").is_err());
        assert!(check_request_from_json("[]").is_err());
        assert!(check_request_from_json("{} {}").is_err());
    }

    #[test]
    fn responses_print_in_camel_case() {
        let json =
            check_response_to_json(&crate::authz::response::denied(true, Some("why"))).unwrap();
        assert!(json.contains("\"deniedResponse\""), "{json}");
        assert!(json.contains("\"code\":7"), "{json}");
    }
}

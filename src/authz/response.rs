//! Decision → CheckResponse. The one place where a decision becomes a wire answer; a deny is
//! always `PERMISSION_DENIED` with a 403, never an error that Envoy's failure mode could turn
//! into an allow.

use envoy_types::pb::{
    envoy::{
        config::core::v3::{
            HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction,
        },
        service::auth::v3::{
            CheckResponse, DeniedHttpResponse, OkHttpResponse, check_response::HttpResponse,
        },
        r#type::v3::{HttpStatus, StatusCode},
    },
    google::{
        protobuf::{Struct, Value, value::Kind},
        rpc::Status,
    },
};

/// gRPC `OK`.
pub const CODE_OK: i32 = 0;
/// gRPC `PERMISSION_DENIED`.
pub const CODE_PERMISSION_DENIED: i32 = 7;
/// The header that carries the deny reason when `--explain-denials` is on.
pub const REASON_HEADER: &str = "x-alp-authz-reason";
/// The body of a denied HTTP response.
pub const DENIED_BODY: &str = "RBAC: access denied\n";

/// The answer to an allowed request. Allocates nothing.
pub fn allowed(http: bool) -> CheckResponse {
    CheckResponse {
        status: Some(Status {
            code: CODE_OK,
            ..Status::default()
        }),
        http_response: http.then(|| HttpResponse::OkResponse(OkHttpResponse::default())),
        dynamic_metadata: None,
    }
}

/// The answer to a denied request. `reason` is sent (status message and a header) only when
/// given: policy names are not leaked to callers by default.
///
/// Allocates only the strings the message owns: the status message, and for HTTP the header
/// list, the content-type header's name and value, the body and (with a reason) the reason
/// header's name and value — 1 allocation for TCP, 5 for HTTP, 2 more with a reason.
pub fn denied(http: bool, reason: Option<&str>) -> CheckResponse {
    CheckResponse {
        status: Some(Status {
            code: CODE_PERMISSION_DENIED,
            message: reason.unwrap_or("denied").to_owned(),
            details: Vec::new(),
        }),
        http_response: http.then(|| {
            let mut headers = Vec::with_capacity(1 + usize::from(reason.is_some()));
            headers.push(header("content-type", "text/plain"));
            if let Some(r) = reason {
                headers.push(header(REASON_HEADER, r));
            }
            HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus {
                    code: StatusCode::Forbidden as i32,
                }),
                headers,
                body: DENIED_BODY.to_owned(),
            })
        }),
        dynamic_metadata: None,
    }
}

/// Replaces the body (and content type) of a denied HTTP answer.
pub fn set_denied_body(resp: &mut CheckResponse, body: String, content_type: &str) {
    if let Some(HttpResponse::DeniedResponse(d)) = resp.http_response.as_mut() {
        d.body = body;
        for h in d.headers.iter_mut().filter_map(|h| h.header.as_mut()) {
            if h.key == "content-type" {
                h.value = content_type.to_owned();
            }
        }
    }
}

/// The OK part of an allowed HTTP answer, to add header mutations to.
pub fn ok_mut(resp: &mut CheckResponse) -> Option<&mut OkHttpResponse> {
    match resp.http_response.as_mut()? {
        HttpResponse::OkResponse(ok) => Some(ok),
        _ => None,
    }
}

/// A value in `dynamic_metadata`.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// A string.
    Str(String),
    /// A number.
    Number(f64),
    /// No value.
    Null,
}

/// Builds a `dynamic_metadata` Struct.
pub fn metadata(fields: &[(&str, MetaValue)]) -> Struct {
    Struct {
        fields: fields
            .iter()
            .map(|(k, v)| {
                let kind = match v {
                    MetaValue::Str(s) => Kind::StringValue(s.clone()),
                    MetaValue::Number(n) => Kind::NumberValue(*n),
                    MetaValue::Null => Kind::NullValue(0),
                };
                ((*k).to_owned(), Value { kind: Some(kind) })
            })
            .collect(),
    }
}

/// A header mutation that replaces any header of the same name (the explicit append action
/// Envoy's docs ask for). The value is made header-safe.
pub fn header(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value: header_safe(value),
            raw_value: Vec::new(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..HeaderValueOption::default()
    }
}

/// Header values must be visible ASCII or space; anything else becomes `?`. One allocation
/// of the final size (a value that is already safe is copied as is).
fn header_safe(s: &str) -> String {
    let safe = |c: char| c == ' ' || c.is_ascii_graphic();
    if s.chars().all(safe) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.chars().count());
    out.extend(s.chars().map(|c| if safe(c) { c } else { '?' }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_hides_reason_unless_asked() {
        let r = denied(true, None);
        assert_eq!(r.status.as_ref().map(|s| s.code), Some(7));
        assert_eq!(
            r.status.as_ref().map(|s| s.message.as_str()),
            Some("denied")
        );
        let Some(HttpResponse::DeniedResponse(d)) = r.http_response else {
            panic!("no denied response");
        };
        assert_eq!(d.status.map(|s| s.code), Some(403));
        assert!(
            d.headers
                .iter()
                .all(|h| h.header.as_ref().is_some_and(|h| h.key != REASON_HEADER))
        );
    }

    #[test]
    fn deny_reason_header_is_sanitized() {
        let r = denied(true, Some("policy é\nx"));
        let Some(HttpResponse::DeniedResponse(d)) = r.http_response else {
            panic!("no denied response");
        };
        let v = d
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == REASON_HEADER)
            .map(|h| h.value.clone());
        assert_eq!(v.as_deref(), Some("policy ??x"));
    }

    #[test]
    fn tcp_answers_have_no_http_part() {
        assert!(allowed(false).http_response.is_none());
        assert!(denied(false, Some("x")).http_response.is_none());
        assert!(matches!(
            allowed(true).http_response,
            Some(HttpResponse::OkResponse(_))
        ));
    }
}

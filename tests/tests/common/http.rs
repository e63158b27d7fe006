//! The JSON API as the end-to-end tests call it: one request with a bearer token,
//! answered with its status and JSON reply (shared by the files that drive the API
//! beside the command line).

use std::time::Duration;

use serde_json::Value;

/// `METHOD /api/v1/PATH` with `body` and the bearer token `token` (none when empty):
/// status and reply.
pub fn call(
    base: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(90)))
        .build()
        .into();
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}/api/v1/{path}"))
        .header("Content-Type", "application/json");
    if !token.is_empty() {
        req = req.header("Authorization", format!("Bearer {token}"));
    }
    let req = req
        .body(body.map_or_else(Vec::new, |b| b.to_string().into_bytes()))
        .unwrap();
    let res = agent.run(req).expect("the request is answered");
    let status = res.status().as_u16();
    let text = res.into_body().read_to_string().expect("a reply");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

//! Spotting credentials in task data. Task data is stored and shown in plain text, so
//! the admin guide's rule is that secrets belong in worker settings (marked secret).

use serde_json::Value;

/// Key fragments that mark a credential, compared after lowercasing and removing `-`
/// and `_` (so `API-Key`, `api_key` and `apiKey` all match `apikey`).
const MARKERS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "credential",
    "authorization",
    "cookie",
];

fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-' && *c != '.')
        .flat_map(char::to_lowercase)
        .collect()
}

/// True when a key name looks like it holds a credential.
pub fn is_sensitive_key(key: &str) -> bool {
    let k = normalize(key);
    MARKERS.iter().any(|m| k.contains(m))
}

/// Paths (`a.b[2].c`) of every credential-looking key in a JSON value.
pub fn sensitive_paths(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(value, String::new(), &mut out);
    out
}

fn walk(v: &Value, path: String, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if is_sensitive_key(k) {
                    out.push(p.clone());
                }
                walk(child, p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// A copy with the values of credential-looking keys replaced by `"[redacted]"`.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_sensitive_key(k) {
                        Value::String("[redacted]".into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_credentials_in_any_spelling_and_depth() {
        let v = json!({"file": "a.csv", "API-Key": 1, "nested": {"db_password": "x"}, "list": [{"authToken": "t"}]});
        let mut paths = sensitive_paths(&v);
        paths.sort();
        assert_eq!(
            paths,
            vec!["API-Key", "list[0].authToken", "nested.db_password"]
        );
        assert!(!is_sensitive_key("file"));
        assert!(!is_sensitive_key("steps"));
    }

    #[test]
    fn redaction_keeps_other_fields() {
        let v = json!({"file": "a.csv", "token": "abc", "n": {"secret": 1}});
        assert_eq!(
            redact(&v),
            json!({"file": "a.csv", "token": "[redacted]", "n": {"secret": "[redacted]"}})
        );
    }
}

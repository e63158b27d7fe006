//! The web admin interface's static files (`host/web/`), embedded in the binary.
//!
//! [`asset`] answers a request path (without the leading `/` or with it) with the
//! file's content type and bytes. Paths of the client-side router (`/tasks/12`,
//! `/workers/demo`: no file extension in the last segment) get `index.html`, so a
//! reload or a bookmarked link opens the right page. `/api/…` is never answered here.
//!
//! [`lang_override`] reads a language file an operator dropped into `{home}/lang/`, so
//! a language can be added or a bundled one corrected without rebuilding; the
//! service serves it at `/lang/{code}.json` in place of the bundled file (see
//! [`lang_asset`], which does both).

use std::io::Read as _;

use serde_json::{Map, Value};

use crate::home::Home;

macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path)) as &[u8])),*]
    };
}

/// Every file under `host/web/` (but `*.md` notes), by its path relative to it. A unit
/// test checks that this list and the directory agree.
const FILES: &[(&str, &[u8])] = embed![
    "index.html",
    "app.css",
    "favicon.svg",
    "js/api.js",
    "js/app.js",
    "js/charts.js",
    "js/dom.js",
    "js/i18n.js",
    "js/icons.js",
    "js/live.js",
    "js/servicetext.js",
    "js/taskops.js",
    "js/ui.js",
    "js/vlist.js",
    "js/watch.js",
    "js/pages/dashboard.js",
    "js/pages/login.js",
    "js/pages/newtask.js",
    "js/pages/running.js",
    "js/pages/stats.js",
    "js/pages/task.js",
    "js/pages/tasks.js",
    "js/pages/worker.js",
    "js/pages/workers.js",
    "js/pages/workflow.js",
    "js/pages/workflows.js",
    "lang/en.json",
    "lang/ru.json",
    "lang/uk.json",
];

/// Languages bundled in `host/web/lang/`.
pub const BUNDLED_LANGUAGES: &[&str] = &["en", "uk", "ru"];

/// Largest language file read from `{home}/lang/`.
const MAX_LANG_FILE: u64 = 512 * 1024;

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn file(path: &str) -> Option<&'static [u8]> {
    FILES.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

/// The embedded file for a request path, as `(content type, bytes)`.
///
/// * `""`, `"/"` and `"index.html"`: the application page.
/// * an embedded file's path (`"js/app.js"`, `"/app.css"`): that file.
/// * a client route (last segment without a `.`, e.g. `"tasks/12"`): the application
///   page, which routes in the browser.
/// * anything else, and anything under `api/`: `None` (a 404).
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = path.trim_start_matches('/');
    if path == "api" || path.starts_with("api/") {
        return None;
    }
    if path.is_empty() {
        return index();
    }
    if let Some(bytes) = file(path) {
        return Some((content_type(path), bytes));
    }
    let last = path.rsplit('/').next().unwrap_or("");
    if !last.contains('.') && !path.split('/').any(|seg| seg == "..") {
        return index();
    }
    None
}

fn index() -> Option<(&'static str, &'static [u8])> {
    file("index.html").map(|b| (content_type("index.html"), b))
}

/// True for `en`, `uk`, `pt-BR`: two lowercase letters, optionally `-` and two
/// uppercase letters. Nothing else can name a file.
pub fn is_language_code(lang: &str) -> bool {
    let b = lang.as_bytes();
    match b.len() {
        2 => b.iter().all(u8::is_ascii_lowercase),
        5 => {
            b[..2].iter().all(u8::is_ascii_lowercase)
                && b[2] == b'-'
                && b[3..].iter().all(u8::is_ascii_uppercase)
        }
        _ => false,
    }
}

/// The language file `{home}/lang/{lang}.json`, merged over the bundled file of the
/// same language when there is one (so an override may hold only the keys it
/// changes), as JSON bytes.
///
/// `None` when `lang` is not a language code (`^[a-z]{2}(-[A-Z]{2})?$`), when there is
/// no such file, or when it is not a safe, valid language file: it must be a regular
/// file (not a symlink), at most 512 KiB, holding a JSON object; entries whose value is
/// not a string are dropped. The result is re-serialized, never the file's own bytes.
pub fn lang_override(home: &Home, lang: &str) -> Option<Vec<u8>> {
    if !is_language_code(lang) {
        return None;
    }
    let path = home.root().join("lang").join(format!("{lang}.json"));
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.file_type().is_file() || meta.len() > MAX_LANG_FILE {
        if meta.len() > MAX_LANG_FILE {
            tracing::warn!(
                "ignoring language file '{}': larger than 512 KiB",
                path.display()
            );
        }
        return None;
    }
    let mut text = String::new();
    std::fs::File::open(&path)
        .ok()?
        .take(MAX_LANG_FILE)
        .read_to_string(&mut text)
        .ok()?;
    let parsed: Map<String, Value> = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(
                "ignoring language file '{}': not a JSON object: {e}",
                path.display()
            );
            return None;
        }
    };
    let mut merged: Map<String, Value> = file(&format!("lang/{lang}.json"))
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_default();
    for (k, v) in parsed {
        if v.is_string() {
            merged.insert(k, v);
        }
    }
    serde_json::to_vec(&merged).ok()
}

/// Language codes offered: the bundled ones, then valid `{home}/lang/*.json` names.
pub fn languages(home: &Home) -> Vec<String> {
    let mut codes: Vec<String> = BUNDLED_LANGUAGES.iter().map(|s| s.to_string()).collect();
    let mut extra: Vec<String> = std::fs::read_dir(home.root().join("lang"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let code = name.strip_suffix(".json")?;
            (is_language_code(code) && !codes.iter().any(|c| c == code)).then(|| code.to_owned())
        })
        .filter(|code| lang_override(home, code).is_some())
        .collect();
    extra.sort();
    codes.append(&mut extra);
    codes
}

/// What the service answers for `/lang/…` paths (the leading `/` optional):
///
/// * `lang/index.json`: `[{"code": "en", "name": "English"}, …]`, the languages offered
///   in the selector (bundled and from `{home}/lang/`);
/// * `lang/{code}.json`: [`lang_override`] when the home has that file, else the bundled
///   file.
///
/// `None` (a 404) for anything else.
pub fn lang_asset(home: &Home, path: &str) -> Option<(&'static str, Vec<u8>)> {
    let name = path.trim_start_matches('/').strip_prefix("lang/")?;
    if name == "index.json" {
        let list: Vec<Value> = languages(home)
            .into_iter()
            .map(|code| {
                let name = lang_override(home, &code)
                    .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
                    .or_else(|| {
                        file(&format!("lang/{code}.json"))
                            .and_then(|b| serde_json::from_slice::<Map<String, Value>>(b).ok())
                    })
                    .and_then(|m| {
                        m.get("lang.name")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| code.clone());
                serde_json::json!({ "code": code, "name": name })
            })
            .collect();
        return Some(("application/json", serde_json::to_vec(&list).ok()?));
    }
    let code = name.strip_suffix(".json")?;
    if !is_language_code(code) {
        return None;
    }
    if let Some(bytes) = lang_override(home, code) {
        return Some(("application/json", bytes));
    }
    file(&format!("lang/{code}.json")).map(|b| ("application/json", b.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    fn web_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
    }

    fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.extension().is_some_and(|e| e == "md") {
                // Notes for developers are not served.
            } else {
                out.insert(
                    p.strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }

    #[test]
    fn every_web_file_is_embedded_and_nothing_else() {
        let mut on_disk = BTreeSet::new();
        walk(&web_dir(), &web_dir(), &mut on_disk);
        let embedded: BTreeSet<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(
            on_disk, embedded,
            "host/web/ and web_assets::FILES differ; list every file in FILES"
        );
    }

    #[test]
    fn files_and_client_routes() {
        let (ct, body) = asset("/").unwrap();
        assert!(ct.starts_with("text/html"));
        assert!(std::str::from_utf8(body).unwrap().contains("js/app.js"));
        assert_eq!(
            asset("/js/app.js").unwrap().0,
            "text/javascript; charset=utf-8"
        );
        assert_eq!(asset("app.css").unwrap().0, "text/css; charset=utf-8");
        assert_eq!(asset("/lang/uk.json").unwrap().0, "application/json");
        // Client routes get the application page.
        for route in [
            "/tasks/12",
            "/workers/demo",
            "/stats",
            "/tasks/new?worker=demo",
            "/login",
        ] {
            assert_eq!(asset(route).unwrap().1, asset("/").unwrap().1, "{route}");
        }
        // Missing files, traversal and the API are not answered.
        for missing in [
            "/js/nope.js",
            "/../Cargo.toml",
            "/a/../../etc",
            "/api/v1/tasks",
            "/api",
        ] {
            assert!(asset(missing).is_none(), "{missing}");
        }
    }

    fn keys(code: &str) -> BTreeSet<String> {
        let m: Map<String, Value> =
            serde_json::from_slice(file(&format!("lang/{code}.json")).unwrap()).unwrap();
        for (k, v) in &m {
            assert!(
                v.as_str().is_some_and(|s| !s.trim().is_empty()),
                "{code}: {k} is empty or not text"
            );
        }
        m.keys().cloned().collect()
    }

    #[test]
    fn bundled_languages_have_the_same_keys() {
        let en = keys("en");
        for code in ["uk", "ru"] {
            let other = keys(code);
            let missing: Vec<_> = en.difference(&other).collect();
            let extra: Vec<_> = other.difference(&en).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{code}: missing {missing:?}, extra {extra:?}"
            );
        }
    }

    #[test]
    fn placeholders_match_across_languages() {
        let re = |s: &str| -> BTreeSet<String> {
            s.split('{')
                .skip(1)
                .filter_map(|p| p.split_once('}').map(|(n, _)| n.to_owned()))
                .collect()
        };
        let load = |code: &str| -> Map<String, Value> {
            serde_json::from_slice(file(&format!("lang/{code}.json")).unwrap()).unwrap()
        };
        let en = load("en");
        for code in ["uk", "ru"] {
            let other = load(code);
            for (k, v) in &en {
                let a = re(v.as_str().unwrap());
                let b = re(other[k].as_str().unwrap());
                assert_eq!(a, b, "{code}: placeholders of {k}");
            }
        }
    }

    #[test]
    fn language_codes() {
        for ok in ["en", "uk", "pt-BR"] {
            assert!(is_language_code(ok), "{ok}");
        }
        for bad in [
            "", "e", "EN", "en-us", "en_US", "../x", "en.json", "eng", "en-USA", "ru/", "en-U1",
        ] {
            assert!(!is_language_code(bad), "{bad}");
        }
    }

    #[test]
    fn overrides_from_the_home() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::init(dir.path(), None).unwrap();
        assert!(
            lang_override(&home, "uk").is_none(),
            "no lang directory yet"
        );
        let lang = dir.path().join("lang");
        std::fs::create_dir(&lang).unwrap();
        std::fs::write(lang.join("uk.json"), r#"{"nav.tasks": "Задачі", "n": 5}"#).unwrap();
        std::fs::write(
            lang.join("de.json"),
            r#"{"lang.name": "Deutsch", "nav.tasks": "Aufgaben"}"#,
        )
        .unwrap();
        std::fs::write(lang.join("fr.json"), "not json").unwrap();
        std::fs::write(dir.path().join("secret.json"), r#"{"a": "b"}"#).unwrap();

        let uk: Map<String, Value> =
            serde_json::from_slice(&lang_override(&home, "uk").unwrap()).unwrap();
        assert_eq!(uk["nav.tasks"], "Задачі", "override wins");
        assert_eq!(uk["nav.workers"], "Обробники", "bundled keys are kept");
        assert!(!uk.contains_key("n"), "non-string values are dropped");

        let de: Map<String, Value> =
            serde_json::from_slice(&lang_override(&home, "de").unwrap()).unwrap();
        assert_eq!(de.len(), 2);
        assert!(lang_override(&home, "fr").is_none(), "invalid JSON");
        for bad in [
            "../secret",
            "../../etc/passwd",
            "secret",
            "DE",
            "de.json",
            "",
        ] {
            assert!(lang_override(&home, bad).is_none(), "{bad}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.json"), lang.join("it.json"))
                .unwrap();
            assert!(lang_override(&home, "it").is_none(), "symlinks are refused");
        }

        assert_eq!(
            languages(&home),
            ["en", "uk", "ru", "de"],
            "valid files only"
        );
        let (_, index) = lang_asset(&home, "/lang/index.json").unwrap();
        let index: Vec<Value> = serde_json::from_slice(&index).unwrap();
        assert!(index.contains(&serde_json::json!({"code": "de", "name": "Deutsch"})));
        assert!(index.contains(&serde_json::json!({"code": "uk", "name": "Українська"})));
        assert_eq!(
            lang_asset(&home, "lang/ru.json").unwrap().1,
            file("lang/ru.json").unwrap()
        );
        assert!(lang_asset(&home, "lang/xx.json").is_none());
        assert!(lang_asset(&home, "lang/../stask.db").is_none());
    }
}

//! Limits per key (issue 17): which limit rule a task falls under and its key, and the
//! rules' numbers kept in the store.
//!
//! A worker declares [`LimitSpec`]s in its manifest, or an operator replaces them with
//! the `limits` setting ([`WorkerManifest::effective_limits`]). The store enforces them
//! when it claims ([`stask_storage::Limits`]); the host's part is:
//!
//! * **Rule identity**: [`LimitSpec::rule`] (`ACTION|TEMPLATE`, `*` for every action),
//!   stored with each task, so a changed number applies to tasks already queued.
//! * **One rule per task**: a task falls under the *first* limit whose action matches
//!   and whose key renders from the task's data ([`task_limit`]).
//! * **Keys**: `{field}` (or `{a.b}`) is replaced by the data's value, strings as they
//!   are and anything else as its JSON text. A limit whose template names a field the
//!   data lacks (or holds `null`) does not apply to the task: the next limit that
//!   matches does, or none. Rendering "null" instead would put every such task under
//!   one shared key, throttling unrelated tasks together. Without a template the key is
//!   the action's name for an action's limit and the worker's identifier for a
//!   worker-wide one.
//! * **Sync**: the store's rules of a worker are set whenever its manifest or settings
//!   change ([`sync_worker`]: discovery, rescan, settings changes) and, for stores
//!   written by an older stask, on every service start ([`sync_all`]).

use anyhow::Result;
use serde_json::{Map, Value};
use stask_plugin_api::manifest::LimitSpec;
use stask_plugin_api::WorkerManifest;
use stask_storage::{LimitRule, Store, TaskLimit, WorkerRecord};

/// The limit rule and key task data `data` of `action` falls under, for worker
/// `worker` with `limits` (its effective limits, in order); `None`: unlimited.
pub fn task_limit(
    worker: &str,
    limits: &[LimitSpec],
    action: &str,
    data: &Value,
) -> Option<TaskLimit> {
    limits.iter().find_map(|spec| {
        if spec.action.as_deref().is_some_and(|a| a != action) {
            return None;
        }
        let key = match &spec.key {
            Some(template) => render_key(template, data)?,
            None => spec.action.clone().unwrap_or_else(|| worker.to_owned()),
        };
        Some(TaskLimit {
            rule: spec.rule(),
            key,
        })
    })
}

/// The limit of a task of `action` with `data` of the registered worker `w`, by its
/// stored manifest and settings.
pub fn limit_of(w: &WorkerRecord, action: &str, data: &Value) -> Option<TaskLimit> {
    let manifest: WorkerManifest = serde_json::from_str(&w.manifest).ok()?;
    let settings: Map<String, Value> = serde_json::from_str(&w.settings).unwrap_or_default();
    task_limit(
        &w.identifier,
        &manifest.effective_limits(&settings),
        action,
        data,
    )
}

/// Renders a key template against task data (the syntax of
/// [`stask_plugin_api::manifest::render_unique_key`]); `None` when a field it names is
/// missing or `null`, or the template is malformed (checked when it was declared).
pub fn render_key(template: &str, data: &Value) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return None;
        }
        let end = tail.find('}')?;
        let path = &tail[1..end];
        if path.is_empty() || path.contains('{') {
            return None;
        }
        match path.split('.').try_fold(data, |v, k| v.get(k))? {
            Value::Null => return None,
            Value::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The store's form of `limits`: each limit's rule and numbers (a rate's period in
/// milliseconds).
pub fn rules(limits: &[LimitSpec]) -> Vec<LimitRule> {
    let mut out: Vec<LimitRule> = limits
        .iter()
        .map(|l| LimitRule {
            rule: l.rule(),
            concurrency: l.concurrency,
            rate: l.rate.map(|r| {
                (
                    r.starts,
                    i64::try_from(r.per_secs).unwrap_or(i64::MAX / 1000) * 1000,
                )
            }),
        })
        .collect();
    // As the store answers them, so a comparison sees equal sets as equal.
    out.sort_by(|a, b| a.rule.cmp(&b.rule));
    out
}

/// The limit rules worker `w` has by its stored manifest and settings.
pub fn rules_of(w: &WorkerRecord) -> Vec<LimitRule> {
    let Ok(manifest) = serde_json::from_str::<WorkerManifest>(&w.manifest) else {
        return Vec::new();
    };
    let settings: Map<String, Value> = serde_json::from_str(&w.settings).unwrap_or_default();
    rules(&manifest.effective_limits(&settings))
}

/// Makes the store's limit rules of `w` what its manifest and settings say; returns
/// whether they changed. Reading first keeps the usual case (nothing changed) a read.
pub fn sync_worker(store: &mut dyn Store, w: &WorkerRecord) -> Result<bool> {
    let want = rules_of(w);
    let mut have = store.limit_rules(&w.identifier)?;
    have.sort_by(|a, b| a.rule.cmp(&b.rule));
    if have == want {
        return Ok(false);
    }
    store.set_limit_rules(&w.identifier, &want)?;
    // A raised or removed limit may free parked tasks: let the services look.
    store.notify_work();
    Ok(true)
}

/// [`sync_worker`] for the registered workers named `ids`.
pub fn sync_workers<'a>(
    store: &mut dyn Store,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    for id in ids {
        if let Some(w) = store.get_worker(id)? {
            sync_worker(store, &w)?;
        }
    }
    Ok(())
}

/// [`sync_worker`] for every registered worker.
pub fn sync_all(store: &mut dyn Store) -> Result<()> {
    for w in store.list_workers()? {
        sync_worker(store, &w)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use stask_plugin_api::prelude::*;

    use super::*;

    fn shop_limits() -> Vec<LimitSpec> {
        vec![
            LimitSpec::action("import")
                .key("shop:{shop_id}")
                .concurrency(1),
            LimitSpec::action("import").concurrency(4),
            LimitSpec::worker().rate(60, 60),
        ]
    }

    #[test]
    fn keys_render_strings_as_they_are_and_other_values_as_json() {
        let data = json!({"shop_id": 42, "name": "a b", "ok": true, "nested": {"id": "x"}});
        assert_eq!(
            render_key("shop:{shop_id}/{name}/{ok}/{nested.id}", &data).as_deref(),
            Some("shop:42/a b/true/x")
        );
        assert_eq!(
            render_key("{{literal}}", &data).as_deref(),
            Some("{literal}")
        );
    }

    #[test]
    fn a_missing_or_null_field_renders_no_key() {
        let data = json!({"shop_id": null});
        assert_eq!(render_key("shop:{shop_id}", &data), None);
        assert_eq!(render_key("shop:{other}", &data), None);
        assert_eq!(render_key("shop:{}", &data), None);
    }

    #[test]
    fn a_task_falls_under_the_first_matching_limit() {
        let limits = shop_limits();
        let keyed = task_limit("shop", &limits, "import", &json!({"shop_id": 7})).unwrap();
        assert_eq!(keyed.rule, "import|shop:{shop_id}");
        assert_eq!(keyed.key, "shop:7");
        // Without the field, the action-wide limit applies, keyed by the action.
        let action = task_limit("shop", &limits, "import", &json!({})).unwrap();
        assert_eq!(
            (action.rule.as_str(), action.key.as_str()),
            ("import|", "import")
        );
        // Another action: only the worker-wide limit, keyed by the worker.
        let worker = task_limit("shop", &limits, "notify", &json!({"shop_id": 7})).unwrap();
        assert_eq!((worker.rule.as_str(), worker.key.as_str()), ("*|", "shop"));
        assert_eq!(task_limit("shop", &[], "import", &json!({})), None);
    }

    #[test]
    fn the_stores_rules_carry_the_numbers_with_periods_in_milliseconds() {
        let r = rules(&shop_limits());
        assert_eq!(
            r.iter().map(|r| r.rule.as_str()).collect::<Vec<_>>(),
            vec!["*|", "import|", "import|shop:{shop_id}"]
        );
        assert_eq!(r[0].rate, Some((60, 60_000)));
        assert_eq!(r[0].concurrency, None);
        assert_eq!(r[2].concurrency, Some(1));
    }

    #[test]
    fn the_limits_setting_replaces_the_manifests_limits() {
        let m = WorkerManifest::new("shop", "Shop")
            .action(ActionSpec::new("import", "Import"))
            .limit(LimitSpec::worker().concurrency(2));
        let given = json!({"limits": [{"action": "import", "key": "{shop_id}", "rate": {"starts": 5, "per_secs": 1}}]});
        let resolved = m.resolve_settings(given.as_object().unwrap()).unwrap();
        let limits = m.effective_limits(&resolved);
        assert_eq!(limits.len(), 1);
        assert_eq!(rules(&limits)[0].rate, Some((5, 1_000)));
        let none = json!({"limits": []});
        assert!(m.effective_limits(none.as_object().unwrap()).is_empty());
    }

    #[test]
    fn bad_limits_are_refused_naming_the_problem() {
        let m = WorkerManifest::new("shop", "Shop").action(ActionSpec::new("import", "Import"));
        let bad = |v: Value| {
            m.resolve_settings(json!({ "limits": v }).as_object().unwrap())
                .unwrap_err()
        };
        assert!(
            bad(json!([{"key": "shop:{}", "concurrency": 1}])).contains("empty or malformed field")
        );
        assert!(bad(json!([{"concurrency": 0}])).contains("concurrency must be 1 or more"));
        assert!(bad(json!([{"rate": {"starts": 1, "per_secs": 0}}])).contains("per_secs"));
        assert!(bad(json!([{"key": "a"}])).contains("neither a concurrency nor a rate"));
        assert!(bad(json!("x")).contains("JSON array"));
        assert!(bad(json!([{"concurency": 1}])).contains("unknown field `concurency`"));
        let unknown = m.check_limits(&[LimitSpec::action("export").concurrency(1)]);
        assert!(unknown.unwrap_err().contains("no action 'export'"));
        let declared = WorkerManifest::new("shop", "Shop")
            .action(ActionSpec::new("import", "Import"))
            .limit(LimitSpec::action("import").key("{a").concurrency(1));
        assert!(declared.validate().unwrap_err().contains("without its '}'"));
    }

    /// Worker `shop`: actions `import` (scheduled) and `notify`; one import per shop at
    /// a time, 60 of anything a minute.
    const SHOP: &str = r#"{"identifier":"shop","title":"Shop","actions":[
        {"name":"import","title":"Import","scheduled":true},
        {"name":"notify","title":"Notify"}],
        "limits":[{"action":"import","key":"shop:{shop_id}","concurrency":1},
                  {"rate":{"starts":60,"per_secs":60}}]}"#;

    fn request(action: &str, data: Value) -> crate::ops::tasks::TaskRequest {
        crate::ops::tasks::TaskRequest {
            worker: "shop".into(),
            action: action.into(),
            data,
            priority: stask_storage::Priority::Normal,
            max_attempts: 3,
            started_by: None,
            allow_sensitive: false,
        }
    }

    fn limit(store: &dyn Store, id: i64) -> Option<(String, String)> {
        store
            .get_task(id)
            .unwrap()
            .unwrap()
            .limit
            .map(|l| (l.rule, l.key))
    }

    #[test]
    fn every_creation_path_stores_the_tasks_limit() {
        use crate::ops::tasks as ops;
        let mut env = crate::ops::testing::Env::new();
        env.worker("shop", SHOP, true, true);
        let store = &mut *env.store;
        let keyed = Some(("import|shop:{shop_id}".to_owned(), "shop:42".to_owned()));

        let plain = ops::create(store, &request("import", json!({"shop_id": 42})), 2).unwrap();
        for id in &plain.ids {
            assert_eq!(limit(store, *id), keyed);
        }
        assert_eq!(
            plain.first.limit.as_ref().map(|l| l.key.as_str()),
            Some("shop:42"),
            "the answer shows the task as stored"
        );
        let unique = ops::create_with(
            store,
            &request("import", json!({"shop_id": 42, "file": "a"})),
            1,
            &ops::UniqueRequest {
                key: Some("a".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(limit(store, unique.ids[0]), keyed);
        let after = ops::create_after(
            store,
            &request("notify", json!({"shop_id": 42})),
            1,
            &Default::default(),
            &ops::AfterRequest {
                ids: vec![plain.ids[0]],
                any: true,
            },
        )
        .unwrap();
        assert_eq!(
            limit(store, after.ids[0]),
            Some(("*|".to_owned(), "shop".to_owned()))
        );

        // A schedule's task falls under the limit its data gives.
        let now = chrono::Utc::now();
        let spec = crate::schedule::Spec::Hourly { minute: 0 };
        crate::ops::schedules::set(
            store,
            "shop",
            &spec,
            &json!({"shop_id": 7}),
            false,
            chrono_tz::UTC,
            now,
        )
        .unwrap();
        let next = store
            .get_schedule("shop")
            .unwrap()
            .unwrap()
            .next_run_at
            .unwrap();
        let at = chrono::DateTime::from_timestamp_millis(next).unwrap();
        let report = crate::schedule::tick(store, chrono_tz::UTC, at).unwrap();
        let fired = serde_json::to_value(&report).unwrap().to_string();
        let id = store
            .list_tasks(&Default::default())
            .unwrap()
            .iter()
            .map(|t| t.id)
            .max()
            .unwrap();
        assert_eq!(
            limit(store, id),
            Some(("import|shop:{shop_id}".to_owned(), "shop:7".to_owned())),
            "{fired}"
        );
    }

    #[test]
    fn the_stores_rules_follow_the_manifest_and_the_limits_setting() {
        use crate::ops::workers::{change_settings, SettingsChange};
        let mut env = crate::ops::testing::Env::new();
        env.worker("shop", SHOP, true, true);
        let store = &mut *env.store;
        sync_all(store).unwrap();
        let mut have = store.limit_rules("shop").unwrap();
        have.sort_by(|a, b| a.rule.cmp(&b.rule));
        assert_eq!(have.len(), 2);
        assert_eq!(have[0].rate, Some((60, 60_000)));
        assert_eq!(have[1].concurrency, Some(1));

        let patch = json!({"limits": [{"action": "notify", "concurrency": 3}]});
        change_settings(
            store,
            "shop",
            &SettingsChange::Patch(patch.as_object().unwrap()),
        )
        .unwrap();
        let have = store.limit_rules("shop").unwrap();
        assert_eq!(have.len(), 1);
        assert_eq!(
            (have[0].rule.as_str(), have[0].concurrency),
            ("notify|", Some(3))
        );
        // Tasks created now fall under the operator's limits.
        let t =
            crate::ops::tasks::create(store, &request("import", json!({"shop_id": 1})), 1).unwrap();
        assert_eq!(t.first.limit, None);

        let bad = json!({"limits": [{"action": "export", "concurrency": 1}]});
        let e = change_settings(
            store,
            "shop",
            &SettingsChange::Patch(bad.as_object().unwrap()),
        )
        .unwrap_err();
        let p = crate::problem::Problem::find(&e).unwrap();
        assert_eq!(p.field.as_deref(), Some("limits"), "{}", p.message);
        assert!(p.message.contains("no action 'export'"), "{}", p.message);

        let none = json!({"limits": []});
        change_settings(
            store,
            "shop",
            &SettingsChange::Patch(none.as_object().unwrap()),
        )
        .unwrap();
        assert!(store.limit_rules("shop").unwrap().is_empty());
    }

    #[test]
    fn a_task_whose_key_is_full_says_so_and_the_claim_refuses_it() {
        use crate::ops::tasks::{self as ops, Capacity, LimitKind, WaitContext, Waiting};
        let mut env = crate::ops::testing::Env::new();
        env.worker("shop", SHOP, true, true);
        let store = &mut *env.store;
        sync_all(store).unwrap();
        let create = |store: &mut dyn Store, shop: i64| {
            ops::create(store, &request("import", json!({ "shop_id": shop })), 1)
                .unwrap()
                .ids[0]
        };
        let (a, b) = (create(store, 1), create(store, 1));
        let now = stask_storage::now_ms();
        let start = |_: &stask_storage::TaskRecord| {
            stask_storage::LogLine::new("running", 0, 0, 0, "", "Started")
        };
        assert!(store.claim_task(a, "o", now, &start).unwrap().is_some());
        // The store refuses a second task of the key, even asked for by id.
        assert!(store.claim_task(b, "o", now, &start).unwrap().is_none());

        let waiting = store.get_task(b).unwrap().unwrap();
        // As a claim parks it: its run_after moves into the future.
        let mut parked = waiting.clone();
        parked.run_after = now + 5_000;
        // Another key, parked a moment ago and with room now.
        let mut free = waiting.clone();
        free.id += 1_000;
        free.limit = Some(TaskLimit {
            rule: "import|shop:{shop_id}".into(),
            key: "shop:2".into(),
        });
        free.run_after = now + 5_000;
        let capacity = Capacity {
            concurrency: 4,
            ..Default::default()
        };
        let tasks = [waiting.clone(), free.clone()];
        let ctx = WaitContext::load_for(&*store, &capacity, &tasks).unwrap();
        let full = Waiting::Limit {
            key: "shop:1".into(),
            kind: LimitKind::Concurrency,
            in_use: 1,
            limit: 1,
            per_secs: None,
            until: None,
        };
        assert_eq!(ctx.waiting(&waiting, now), Some(full.clone()));
        assert_eq!(ctx.waiting(&parked, now), Some(full), "not 'scheduled for'");
        assert_eq!(ctx.waiting(&free, now), Some(Waiting::Queued));
        // One parked behind another of its key until released, after a failed attempt:
        // its run_after is no retry time to show.
        let mut behind = free.clone();
        behind.attempts = 1;
        behind.run_after = stask_storage::PARKED_UNTIL_RELEASED;
        assert_eq!(ctx.waiting(&behind, now), Some(Waiting::Queued));
        assert_eq!(
            ops::limit_waiting(&*store, &waiting)
                .unwrap()
                .and_then(|w| w.limit_text())
                .as_deref(),
            Some("limit 'shop:1' 1/1 in use")
        );
    }
}

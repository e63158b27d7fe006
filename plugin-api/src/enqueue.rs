//! Follow-up tasks a running task creates ([`Context::enqueue`](crate::Context::enqueue)):
//! which targets a worker may enqueue and the bounds the host applies.
//!
//! A worker declares what it may enqueue in its manifest with
//! [`WorkerManifest::enqueues`](crate::WorkerManifest::enqueues): a target is a worker
//! identifier (any of its actions) or `worker/action`. Anything else is refused, by the
//! host (which checks against the manifest it registered, never what the runner says) and
//! by the [test harness](crate::testing::TestRun) alike, with [`refusal`]'s message.
//!
//! ```
//! use stask_plugin_api::enqueue::{allows, validate_target};
//!
//! assert!(validate_target("demo/run").is_ok());
//! assert!(validate_target("demo").is_ok());
//! assert!(validate_target("demo/").is_err());
//! let declared = ["demo/run".to_owned(), "mailer".to_owned()];
//! assert!(allows(&declared, "demo", "run"));
//! assert!(allows(&declared, "mailer", "send"));
//! assert!(!allows(&declared, "demo", "noop"));
//! ```

use crate::manifest::is_valid_identifier;

/// Most follow-up tasks one attempt of a task may enqueue; the next is refused with
/// [`too_many`]'s message.
///
/// ```
/// assert_eq!(stask_plugin_api::enqueue::MAX_PER_ATTEMPT, 1_000);
/// ```
pub const MAX_PER_ATTEMPT: u32 = 1_000;

/// Most targets one manifest may declare.
///
/// ```
/// assert_eq!(stask_plugin_api::enqueue::MAX_TARGETS, 64);
/// ```
pub const MAX_TARGETS: usize = 64;

/// Checks one declared target: `worker` or `worker/action`, each part an identifier.
///
/// ```
/// use stask_plugin_api::enqueue::validate_target;
///
/// assert!(validate_target("product-import/import").is_ok());
/// assert!(validate_target("Demo").unwrap_err().contains("'Demo'"));
/// assert!(validate_target("a/b/c").is_err());
/// ```
pub fn validate_target(target: &str) -> Result<(), String> {
    let (worker, action) = split(target);
    let ok = is_valid_identifier(worker) && action.is_none_or(is_valid_identifier);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "enqueue target '{}' must be a worker identifier or 'worker/action' (lowercase letters, digits, '-' or '_')",
            target.escape_debug()
        ))
    }
}

fn split(target: &str) -> (&str, Option<&str>) {
    match target.split_once('/') {
        Some((w, a)) => (w, Some(a)),
        None => (target, None),
    }
}

/// Whether the declared `targets` allow enqueueing `action` of `worker`.
///
/// ```
/// use stask_plugin_api::enqueue::allows;
///
/// assert!(!allows(&[], "demo", "run")); // nothing declared, nothing allowed
/// assert!(allows(&["demo".to_owned()], "demo", "run"));
/// ```
pub fn allows(targets: &[String], worker: &str, action: &str) -> bool {
    targets.iter().any(|t| match split(t) {
        (w, None) => w == worker,
        (w, Some(a)) => w == worker && a == action,
    })
}

/// Why `action` of `worker` may not be enqueued by worker `by`, which declares
/// `targets`.
///
/// ```
/// use stask_plugin_api::enqueue::refusal;
///
/// let m = refusal("demo", &["demo/run".to_owned()], "mailer", "send");
/// assert_eq!(
///     m,
///     "worker 'demo' may not enqueue 'mailer/send': its manifest declares only demo/run"
/// );
/// ```
pub fn refusal(by: &str, targets: &[String], worker: &str, action: &str) -> String {
    let target = format!("{}/{}", worker.escape_debug(), action.escape_debug());
    if targets.is_empty() {
        format!(
            "worker '{by}' may not enqueue '{target}': its manifest declares no enqueue targets (WorkerManifest::enqueues)"
        )
    } else {
        format!(
            "worker '{by}' may not enqueue '{target}': its manifest declares only {}",
            targets.join(", ")
        )
    }
}

/// The message of the enqueue beyond [`MAX_PER_ATTEMPT`].
///
/// ```
/// assert!(stask_plugin_api::enqueue::too_many().contains("1000"));
/// ```
pub fn too_many() -> String {
    format!(
        "a task may enqueue at most {MAX_PER_ATTEMPT} tasks per attempt; this one has reached the limit"
    )
}

/// Checks a manifest's declared targets: each valid, none twice, at most
/// [`MAX_TARGETS`].
///
/// ```
/// use stask_plugin_api::enqueue::validate_targets;
///
/// assert!(validate_targets(&["demo/run".to_owned()]).is_ok());
/// let twice = ["demo".to_owned(), "demo".to_owned()];
/// assert!(validate_targets(&twice).unwrap_err().contains("twice"));
/// ```
pub fn validate_targets(targets: &[String]) -> Result<(), String> {
    if targets.len() > MAX_TARGETS {
        return Err(format!(
            "at most {MAX_TARGETS} enqueue targets may be declared, got {}",
            targets.len()
        ));
    }
    for (i, t) in targets.iter().enumerate() {
        validate_target(t)?;
        if targets[..i].contains(t) {
            return Err(format!("enqueue target '{t}' is declared twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use abi_stable::sabi_trait::TD_Opaque;
    use abi_stable::std_types::{RResult, RStr, RString};
    use serde_json::{json, Value};

    use crate::abi::{RunContext, RunContextRef, RunContext_TO, ENQUEUE_UNSUPPORTED};
    use crate::prelude::*;
    use crate::testing::TestRun;

    /// Enqueues what its data says: `[{"worker", "action", "data"}...]` under "tasks",
    /// collecting the ids or errors.
    struct Enqueuer;

    impl Worker for Enqueuer {
        fn manifest(&self) -> WorkerManifest {
            WorkerManifest::new("enqueuer", "Enqueuer")
                .action(ActionSpec::new("run", "Run"))
                .action(ActionSpec::new("leaf", "Leaf"))
                .enqueues("enqueuer/leaf")
                .enqueues("mailer")
        }

        fn run(&self, ctx: &Context<'_>, _: &str, input: Input) -> Result<Value, Error> {
            let mut out = Vec::new();
            for t in input
                .data
                .get("tasks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let got = ctx.enqueue(
                    t["worker"].as_str().unwrap_or_default(),
                    t["action"].as_str().unwrap_or_default(),
                    t["data"].clone(),
                );
                out.push(match got {
                    Ok(id) => json!(id),
                    Err(e) => json!(e.message()),
                });
            }
            if let Some(n) = input.data.get("many").and_then(Value::as_u64) {
                for _ in 0..n {
                    ctx.enqueue("enqueuer", "leaf", json!({}))?;
                }
            }
            Ok(Value::Array(out))
        }
    }

    #[test]
    fn the_harness_records_declared_follow_ups_with_ids_after_the_task() {
        let data = json!({"tasks": [
            {"worker": "enqueuer", "action": "leaf", "data": {"n": 1}},
            {"worker": "mailer", "action": "send", "data": {"to": "x"}},
        ]});
        let out = TestRun::new(&Enqueuer, "run").task_id(7).data(data).run();
        assert_eq!(out.result, Ok(json!([8, 9])));
        let got: Vec<(String, Value)> = out
            .enqueued()
            .iter()
            .map(|e| (e.target(), e.data.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("enqueuer/leaf".to_owned(), json!({"n": 1})),
                ("mailer/send".to_owned(), json!({"to": "x"}))
            ]
        );
    }

    #[test]
    fn an_undeclared_target_or_bad_data_is_refused_and_logged() {
        let data = json!({"tasks": [
            {"worker": "enqueuer", "action": "run", "data": {}},
            {"worker": "enqueuer", "action": "leaf", "data": [1]},
        ]});
        let out = TestRun::new(&Enqueuer, "run").data(data).run();
        let refused = "worker 'enqueuer' may not enqueue 'enqueuer/run': its manifest declares only enqueuer/leaf, mailer";
        assert_eq!(
            out.result,
            Ok(json!([refused, "task data must be a JSON object"]))
        );
        assert!(out.enqueued().is_empty());
        let logs: Vec<_> = out.logs().collect();
        assert_eq!(
            logs[0],
            (Level::Error, &*format!("Enqueue refused: {refused}"))
        );
        assert_eq!(logs.len(), 2);
    }

    #[test]
    fn one_attempt_enqueues_at_most_the_limit() {
        let out = TestRun::new(&Enqueuer, "run")
            .data(json!({"many": super::MAX_PER_ATTEMPT + 1}))
            .run();
        assert_eq!(out.result, Err(super::too_many()));
        assert_eq!(out.enqueued().len(), super::MAX_PER_ATTEMPT as usize);
    }

    #[test]
    fn manifests_without_targets_read_and_write_as_before() {
        let old = r#"{"identifier":"w","title":"W","actions":[{"name":"run","title":"Run"}]}"#;
        let m: WorkerManifest = serde_json::from_str(old).unwrap();
        assert!(m.enqueues.is_empty());
        assert!(serde_json::to_value(&m).unwrap().get("enqueues").is_none());
        let declared = m.clone().enqueues("w/run");
        let back: WorkerManifest =
            serde_json::from_value(serde_json::to_value(&declared).unwrap()).unwrap();
        assert_eq!(back.enqueues, ["w/run"]);
    }

    #[test]
    fn invalid_targets_fail_validation_naming_the_worker() {
        let base = WorkerManifest::new("w", "W").action(ActionSpec::new("run", "Run"));
        assert_eq!(base.clone().enqueues("other").validate(), Ok(()));
        let e = base.clone().enqueues("Bad/x").validate().unwrap_err();
        assert!(e.starts_with("worker 'w': enqueue target 'Bad/x'"), "{e}");
        let e = base.clone().enqueues("a/b/c").validate().unwrap_err();
        assert!(e.contains("'a/b/c'"), "{e}");
        let e = base.enqueues("x").enqueues("x").validate().unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    struct Host;

    impl RunContext for Host {
        fn progress(&self, _: u64, _: u64, _: RStr<'_>) {}
        fn log(&self, _: u8, _: RStr<'_>) {}
        fn is_cancelled(&self) -> bool {
            false
        }
        fn task_id(&self) -> u64 {
            5
        }
        fn result_dir(&self) -> RString {
            RString::from("/tmp")
        }
    }

    extern "C" fn host_enqueue(
        task: u64,
        worker: RStr<'_>,
        action: RStr<'_>,
        data: RStr<'_>,
    ) -> RResult<u64, RString> {
        if worker.as_str() == "refuse" {
            return RResult::RErr(RString::from(format!("no: {action} {data}")));
        }
        RResult::ROk(task * 100)
    }

    /// The only test touching the library-wide service slot (the harness never does).
    #[test]
    fn enqueue_goes_to_the_service_the_host_offered_and_fails_clearly_without_one() {
        let host = Host;
        let raw: RunContextRef<'_> = RunContext_TO::from_ptr(&host, TD_Opaque);
        let ctx = Context::from_raw(raw);
        // A host that offered nothing (one older than this SDK).
        let e = ctx.enqueue("w", "run", json!({})).unwrap_err();
        assert_eq!(e.message(), ENQUEUE_UNSUPPORTED);
        // What the runner does through the exported symbol.
        crate::export::set_host_services(host_enqueue);
        assert_eq!(ctx.enqueue("w", "run", json!({})).unwrap(), 500);
        let e = ctx.enqueue("refuse", "run", json!({"a": 1})).unwrap_err();
        assert_eq!(e.message(), r#"no: run {"a":1}"#);
    }
}

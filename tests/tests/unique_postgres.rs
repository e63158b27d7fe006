//! Unique tasks on PostgreSQL (the local server of `scripts/postgres.sh`, a schema per
//! test): eight `tasks create --unique-key` processes started at once from two hosts
//! (homes of their own sharing the database) make one task, and the others print it.

use std::time::Duration;

use serde_json::Value;
use stask_e2e::{describe, Background, Home};

#[path = "common/pg.rs"]
mod pg;
use pg::Schema;

const DEMO: &str = "stask_worker_demo";
const WAIT: Duration = Duration::from_secs(60);

impl Schema {
    fn new() -> Schema {
        Schema::named("stask_unique")
    }

    /// A home (with its own plugins directory holding the demo library) whose store
    /// is this schema: a host of its own.
    fn host(&self) -> Home {
        let home = self.home();
        home.install(DEMO);
        home
    }
}

#[test]
fn eight_processes_on_two_hosts_creating_one_key_make_one_task() {
    let db = Schema::new();
    let first = db.host();
    first.ok(&["workers", "discover", "--activate"]);
    let second = db.host();
    let args = [
        "tasks",
        "create",
        "demo",
        "echo",
        "--unique-key",
        "pg-race",
        "--json",
    ];
    let creators: Vec<Background> = (0..8)
        .map(|i| [&first, &second][i % 2].spawn(&args, &[]))
        .collect();
    let replies: Vec<(i32, Value)> = creators
        .into_iter()
        .map(|bg| {
            let out = bg.wait(WAIT);
            let v = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", describe("create", &out)));
            (out.status.code().expect("an exit code"), v)
        })
        .collect();
    let made: Vec<&Value> = replies
        .iter()
        .filter(|(c, _)| *c == 0)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(made.len(), 1, "exactly one process creates: {replies:#?}");
    assert_eq!(made[0]["existing"], false);
    for (code, v) in &replies {
        if *code != 0 {
            assert_eq!(*code, 3, "{v:#}");
            assert_eq!(
                (&v["existing"], &v["id"]),
                (&Value::Bool(true), &made[0]["id"])
            );
        }
    }
    let list = second.json(&["tasks", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list:#}");
    // Once that task is gone from the counted states, the key makes a new one.
    let id = made[0]["id"].as_i64().unwrap().to_string();
    first.ok(&["tasks", "cancel", &id]);
    let again = second.json(&["tasks", "create", "demo", "echo", "--unique-key", "pg-race"]);
    assert_eq!(again["existing"], false);
    assert_ne!(again["id"], made[0]["id"]);
}

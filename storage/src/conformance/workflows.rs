//! Workflows: a named group of tasks with dependencies, created in one transaction,
//! read with its steps, edges and overall progress, cancelled and retried as a group.

use super::{claim, completed, finish, line, register, task, texts, Harness};
use crate::{
    NewStep, NewWorkflow, Outcome, Status, Store, WorkflowCancel, WorkflowRetry,
    WAITING_FOR_DEPENDENCIES,
};

fn step(name: &str, after: &[usize], any: bool) -> NewStep {
    NewStep {
        step: name.into(),
        task: task("w", 100),
        after: after.to_vec(),
        after_any: any,
        creation: line("pending", &format!("created {name}")),
    }
}

/// fetch -> (a, b) -> merge: a fan-out and a fan-in.
fn diamond() -> NewWorkflow {
    NewWorkflow {
        name: "nightly import".into(),
        started_by: Some("ann".into()),
        created_at: 100,
        steps: vec![
            step("fetch", &[], false),
            step("a", &[0], false),
            step("b", &[0], false),
            step("merge", &[1, 2], false),
        ],
    }
}

fn failed() -> Outcome {
    Outcome::Failed {
        error: "boom".into(),
        retry_at: None,
    }
}

fn status(s: &dyn Store, id: i64) -> Status {
    s.get_task(id).unwrap().unwrap().status
}

fn claimed(s: &mut dyn Store, now: i64) -> Vec<i64> {
    claim(s, "me", now, 10).iter().map(|c| c.task.id).collect()
}

pub fn a_workflow_is_created_with_its_steps_and_edges_and_runs_in_dependency_order(
    h: &dyn Harness,
) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let (wf, ids) = s.insert_workflow(&diamond()).unwrap();
    assert_eq!(ids.len(), 4);
    let [fetch, a, b, merge] = ids[..] else {
        unreachable!()
    };
    assert_eq!(texts(&*s, a), ["pending|0|0|0|-|created a"]);
    let d = s.get_workflow(wf).unwrap().expect("the workflow");
    assert_eq!(d.workflow.name, "nightly import");
    assert_eq!(d.workflow.started_by.as_deref(), Some("ann"));
    assert_eq!(d.workflow.tasks(), 4);
    assert_eq!(d.workflow.counts.pending, 4);
    assert_eq!(d.workflow.status(), Status::Pending);
    assert_eq!(d.workflow.progress(), 0);
    let names: Vec<&str> = d.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(names, ["fetch", "a", "b", "merge"]);
    assert_eq!(d.steps[3].after, [a, b]);
    assert_eq!(d.steps[1].after, [fetch]);
    assert!(d.steps[0].after.is_empty());
    assert_eq!(d.steps[3].task.run_after, WAITING_FOR_DEPENDENCIES);
    assert_eq!(s.task_workflow(merge).unwrap(), Some((wf, "merge".into())));
    assert_eq!(s.task_workflow(999_999).unwrap(), None);
    assert!(s.get_workflow(wf + 1000).unwrap().is_none());

    assert_eq!(claimed(&mut *s, 1_000), [fetch], "only the root is due");
    s.finish_tasks(&[finish(fetch, "me", completed(), "completed", 1_100)])
        .unwrap();
    assert_eq!(claimed(&mut *s, 2_000), [a, b], "the fan-out");
    let d = s.get_workflow(wf).unwrap().unwrap();
    assert_eq!(d.workflow.status(), Status::Running);
    assert_eq!(
        (d.workflow.counts.running, d.workflow.counts.completed),
        (2, 1)
    );
    s.finish_tasks(&[finish(a, "me", completed(), "completed", 2_100)])
        .unwrap();
    assert!(claimed(&mut *s, 3_000).is_empty(), "merge waits for b");
    s.finish_tasks(&[finish(b, "me", completed(), "completed", 2_200)])
        .unwrap();
    assert_eq!(claimed(&mut *s, 4_000), [merge], "the fan-in");
    s.finish_tasks(&[finish(merge, "me", completed(), "completed", 4_100)])
        .unwrap();
    let d = s.get_workflow(wf).unwrap().unwrap();
    assert_eq!(d.workflow.status(), Status::Completed);
    assert_eq!(d.workflow.progress(), 100);
    assert_eq!(d.workflow.finished_at, Some(4_100));
}

pub fn workflows_are_listed_newest_first_with_their_counts(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let (first, ids) = s.insert_workflow(&diamond()).unwrap();
    let mut other = diamond();
    other.name = "second".into();
    let (second, _) = s.insert_workflow(&other).unwrap();
    assert!(second > first);
    claim(&mut *s, "me", 1_000, 1);
    s.finish_tasks(&[finish(ids[0], "me", completed(), "completed", 1_100)])
        .unwrap();
    let (list, total) = s.list_workflows(10, 0).unwrap();
    assert_eq!(total, 2);
    let got: Vec<(i64, &str)> = list.iter().map(|w| (w.id, w.name.as_str())).collect();
    assert_eq!(got, [(second, "second"), (first, "nightly import")]);
    assert_eq!(list[1].counts.completed, 1);
    assert_eq!(list[1].counts.pending, 3);
    assert_eq!(list[1].progress(), 25);
    assert_eq!(list[1].status(), Status::Running);
    assert_eq!(list[0].progress(), 0);
    let (page, total) = s.list_workflows(1, 1).unwrap();
    assert_eq!((page.len(), page[0].id, total), (1, first, 2));
    assert!(s.list_workflows(10, 5).unwrap().0.is_empty());
}

pub fn a_workflow_with_a_bad_order_writes_nothing(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let mut wf = diamond();
    wf.steps[1].after = vec![3];
    assert!(s.insert_workflow(&wf).is_err());
    assert_eq!(s.list_workflows(10, 0).unwrap().1, 0);
    assert_eq!(s.task_status_counts().unwrap().pending, 0);
}

pub fn a_failing_step_cancels_its_dependants_and_a_retry_rearms_them(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let (wf, ids) = s.insert_workflow(&diamond()).unwrap();
    let [fetch, a, b, merge] = ids[..] else {
        unreachable!()
    };
    claimed(&mut *s, 1_000);
    s.finish_tasks(&[finish(fetch, "me", completed(), "completed", 1_100)])
        .unwrap();
    claimed(&mut *s, 2_000);
    s.finish_tasks(&[
        finish(a, "me", failed(), "failed", 2_100),
        finish(b, "me", completed(), "completed", 2_100),
    ])
    .unwrap();
    let m = s.get_task(merge).unwrap().unwrap();
    assert_eq!(m.status, Status::Cancelled);
    assert!(m.message.contains(&format!("#{a}")), "{}", m.message);
    let d = s.get_workflow(wf).unwrap().unwrap();
    assert_eq!(d.workflow.status(), Status::Failed);
    assert_eq!(d.workflow.finished_at, Some(2_100));

    let r = s
        .retry_workflow(wf, 3_000, &|t| {
            line("pending", &format!("again {}", t.status))
        })
        .unwrap();
    assert_eq!(
        r,
        Some(WorkflowRetry {
            retried: 2,
            waiting: 1
        })
    );
    assert_eq!(
        texts(&*s, a).last().unwrap(),
        "pending|0|0|0|-|again failed"
    );
    assert_eq!(
        texts(&*s, merge).last().unwrap(),
        "pending|0|0|0|-|again cancelled"
    );
    let m = s.get_task(merge).unwrap().unwrap();
    assert_eq!(
        (m.status, m.run_after),
        (Status::Pending, WAITING_FOR_DEPENDENCIES)
    );
    assert_eq!(s.task_dependencies(merge).unwrap().unwrap().waiting_on, [a]);
    assert_eq!(
        claimed(&mut *s, 4_000),
        [a],
        "merge waits for the retried a"
    );
    s.finish_tasks(&[finish(a, "me", completed(), "completed", 4_100)])
        .unwrap();
    assert_eq!(claimed(&mut *s, 5_000), [merge]);
    s.finish_tasks(&[finish(merge, "me", completed(), "completed", 5_100)])
        .unwrap();
    assert_eq!(
        s.get_workflow(wf).unwrap().unwrap().workflow.status(),
        Status::Completed
    );
    // Nothing left to retry.
    assert_eq!(
        s.retry_workflow(wf, 6_000, &|_| line("pending", "x"))
            .unwrap(),
        Some(WorkflowRetry::default())
    );
    assert_eq!(
        s.retry_workflow(wf + 1000, 6_000, &|_| line("pending", "x"))
            .unwrap(),
        None
    );
}

pub fn cancelling_a_workflow_ends_pending_tasks_and_flags_running_ones(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let (wf, ids) = s.insert_workflow(&diamond()).unwrap();
    let [fetch, a, b, merge] = ids[..] else {
        unreachable!()
    };
    claimed(&mut *s, 1_000);
    let stop = line("cancelled", "Workflow cancelled");
    let c = s.cancel_workflow(wf, 1_500, &stop).unwrap();
    assert_eq!(
        c,
        Some(WorkflowCancel {
            cancelled: 3,
            requested: 1
        })
    );
    for t in [a, b, merge] {
        assert_eq!(status(&*s, t), Status::Cancelled);
        assert_eq!(
            texts(&*s, t).last().unwrap(),
            "cancelled|0|0|0|-|Workflow cancelled"
        );
    }
    assert_eq!(status(&*s, fetch), Status::Running);
    assert_eq!(s.cancel_requests("me").unwrap(), [fetch]);
    // The runner stops it.
    s.finish_tasks(&[finish(
        fetch,
        "me",
        Outcome::Cancelled {
            message: "stopped".into(),
        },
        "cancelled",
        1_600,
    )])
    .unwrap();
    let d = s.get_workflow(wf).unwrap().unwrap();
    assert_eq!(d.workflow.status(), Status::Cancelled);
    assert_eq!(d.workflow.counts.cancelled, 4);
    assert_eq!(
        s.cancel_workflow(wf, 1_700, &stop).unwrap(),
        Some(WorkflowCancel::default()),
        "nothing left to cancel"
    );
    assert_eq!(s.cancel_workflow(wf + 1000, 1_700, &stop).unwrap(), None);
    // The retry queues all four again; only the root is due.
    let r = s
        .retry_workflow(wf, 2_000, &|_| line("pending", "again"))
        .unwrap()
        .unwrap();
    assert_eq!((r.retried, r.waiting), (4, 3));
    assert_eq!(claimed(&mut *s, 3_000), [fetch]);
    let counts = s.task_status_counts().unwrap();
    assert_eq!((counts.pending, counts.running), (3, 1));
}

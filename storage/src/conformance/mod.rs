//! The conformance suite: what every backend must do, as functions that take a
//! [`Harness`] for a fresh database. A backend's tests run every case with
//! [`conformance_tests!`](crate::conformance_tests); the SQLite backend does so in
//! `sqlite/conformance_tests.rs`.
//!
//! Cases state behaviour through the [`Store`](crate::Store) traits only, never through
//! SQL, so the same expectations hold for every backend.

pub mod accounts;
pub mod deps;
pub mod files;
pub mod hosts;
pub mod leases;
pub mod limits;
pub mod logs;
pub mod queue;
pub mod registry;
pub mod schedules;
pub mod search;
pub mod statistics;
pub mod store;
pub mod unique;
pub mod wakeups;
pub mod workflows;

use crate::{
    Claim, ClaimedTask, Finish, LibraryFingerprint, LogLine, NewTask, Outcome, Priority, Store,
    WorkerMetadata,
};

/// A fresh database for one case.
pub trait Harness: Sync {
    /// A new connection to the case's database (every call reaches the same data).
    fn open(&self) -> Box<dyn Store>;

    /// Checks what [`Store::release_space`](crate::TaskQueue::release_space) gave back
    /// after about 4 MB of tasks were deleted: a backend that gives space back to the
    /// file system must have given most of it.
    fn check_released(&self, bytes: u64);
}

/// Generates one `#[test]` per conformance case, each with a fresh harness from
/// `$harness` (an expression evaluated per test, in a module nested in the caller's:
/// name the harness type with a path that resolves there, e.g. `super::MyHarness`).
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@modules $harness;
            accounts {
                users_sessions_and_the_last_admin,
                tokens_get_default_names_and_can_be_revoked,
                tokens_may_have_the_metrics_role,
                failed_logins_block_a_key_until_its_oldest_counted_failure_leaves_the_window,
                failures_older_than_the_window_are_deleted_as_failures_are_recorded,
                failures_of_one_key_recorded_at_once_are_all_counted
            }
            files {
                files_are_stored_listed_and_read_back_in_chunks,
                a_file_over_its_limit_stores_nothing,
                a_file_of_the_same_name_is_replaced,
                a_file_of_a_task_that_does_not_exist_is_refused
            }
            hosts {
                hosts_register_with_their_libraries_and_show_their_lease,
                silent_hosts_are_forgotten
            }
            leases {
                a_renewed_lease_keeps_running_tasks_alive,
                one_leader_at_a_time_until_its_term_runs_out_or_it_resigns,
                hosts_racing_for_the_leadership_elect_one
            }
            logs {
                lines_page_and_resume_after_a_position,
                control_characters_in_messages_are_stored_escaped,
                lines_carry_the_time_they_were_stored
            }
            queue {
                inserted_tasks_get_distinct_ids_and_their_creation_line,
                ids_are_never_reused_after_the_newest_tasks_are_deleted,
                claims_follow_priority_then_creation_order,
                only_due_tasks_of_active_and_not_excluded_workers_are_claimed,
                concurrent_claims_never_take_a_task_twice,
                a_claim_stores_the_start_line_and_a_finish_its_last_lines,
                finishes_apply_only_for_the_owner_of_the_claim,
                retries_and_requeues_go_back_to_pending,
                progress_and_lines_are_recorded_only_for_the_owner,
                claim_task_takes_one_pending_task_whatever_its_due_time,
                cancel_ends_pending_tasks_and_flags_running_ones,
                retry_queues_failed_and_cancelled_tasks_with_their_line,
                make_due_moves_pending_tasks_forward,
                deleting_takes_logs_and_files_and_leaves_unfinished_tasks,
                clean_up_deletes_old_finished_tasks_in_batches,
                space_freed_by_clean_up_is_given_back,
                a_cancel_requested_while_an_attempt_ran_wins_over_a_retry_or_requeue,
                deleting_the_same_id_twice_counts_it_once,
                concurrent_writers_number_lines_in_order_and_ids_apart
            }
            deps {
                a_task_runs_only_after_its_dependencies_completed,
                a_failed_or_cancelled_dependency_cancels_its_dependants_unless_any,
                a_failed_attempt_that_is_retried_releases_nothing,
                two_dependencies_ending_at_once_release_their_dependant_once,
                deleting_a_dependency_or_a_dependant_leaves_no_waiting_task_behind,
                waiting_and_parked_tasks_are_held_not_claimable,
                a_unique_task_after_others_is_created_once
            }
            limits {
                rules_are_replaced_per_worker_and_read_back,
                a_key_at_its_concurrency_is_skipped_and_parked_while_other_keys_run,
                a_finish_releases_the_next_parked_task_of_its_key,
                tasks_released_to_a_claim_keep_claim_order_and_stay_due_when_not_taken,
                a_parked_task_is_looked_at_again_after_the_recheck_time,
                a_rate_limit_lets_n_starts_per_period_and_the_rest_wait,
                every_start_under_a_rate_counts_a_retried_tasks_too,
                a_changed_rule_applies_to_tasks_already_queued,
                a_head_of_queue_at_its_limit_does_not_hide_the_tasks_behind_it,
                a_long_queue_parked_on_one_key_does_not_come_back_all_at_once,
                cancelling_or_starting_by_id_the_task_a_key_waits_behind_releases_the_next,
                concurrent_claims_never_run_a_key_beyond_its_limit
            }
            registry {
                workers_are_registered_updated_and_removed,
                a_worker_held_for_review_stays_inactive_until_activated,
                a_removed_worker_registered_again_gets_back_what_it_had
            }
            schedules {
                set_get_replace_list_delete,
                a_schedule_needs_a_registered_worker_and_goes_with_it,
                fires_once_per_slot_with_the_creation_line_and_advances,
                a_replaced_or_paused_schedule_is_not_fired_with_stale_values,
                a_busy_previous_task_or_an_inactive_worker_records_a_skip,
                an_action_refused_by_the_host_is_a_skip,
                two_connections_fire_a_slot_once
            }
            search {
                filters_text_and_pages,
                text_search_follows_progress_outcomes_cancels_retries_and_clean_up,
                text_search_finds_substrings_among_many_texts_short_ones_too,
                children_are_listed_by_parent
            }
            statistics {
                counts_and_activity_follow_every_change,
                finished_tasks_are_counted_per_minute,
                counts_read_while_tasks_move_come_from_one_snapshot
            }
            store {
                a_sound_store_passes_its_integrity_check,
                settings_swaps_apply_together_or_not_at_all
            }
            unique {
                a_second_task_with_the_key_returns_the_first_while_it_is_pending_or_running,
                keys_are_matched_per_worker_and_action_and_within_the_period,
                creators_racing_with_one_key_make_one_task
            }
            wakeups { creating_work_wakes_a_listener }
            workflows {
                a_workflow_is_created_with_its_steps_and_edges_and_runs_in_dependency_order,
                workflows_are_listed_newest_first_with_their_counts,
                a_workflow_with_a_bad_order_writes_nothing,
                a_failing_step_cancels_its_dependants_and_a_retry_rearms_them,
                cancelling_a_workflow_ends_pending_tasks_and_flags_running_ones
            }
        );
    };
    (@modules $harness:expr; $($module:ident { $($case:ident),* $(,)? })*) => {
        $(
            mod $module {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[test]
                    fn $case() {
                        let harness = $harness;
                        $crate::conformance::$module::$case(&harness);
                    }
                )*
            }
        )*
    };
}

/// A manifest with one action, `run`, that schedules may run.
pub const MANIFEST: &str =
    r#"{"identifier":"w","title":"W","actions":[{"name":"run","title":"Run"}]}"#;

/// What a worker's registration takes from its manifest, with `manifest` as the JSON.
pub fn meta(manifest: &str) -> WorkerMetadata<'_> {
    WorkerMetadata {
        scope: "",
        title: "T",
        description: "",
        icon: "gear",
        version: "1",
        manifest,
    }
}

/// A library fingerprint.
pub fn lib() -> LibraryFingerprint {
    LibraryFingerprint {
        path: "/x.so".into(),
        size: 1,
        mtime_ns: 1,
        sha256: "00".into(),
    }
}

/// Registers workers (active or not) with [`MANIFEST`].
pub fn register(store: &mut dyn Store, names: &[&str], active: bool) {
    let workers: Vec<_> = names
        .iter()
        .map(|n| ((*n).to_owned(), meta(MANIFEST), lib(), active))
        .collect();
    store.insert_workers(&workers).unwrap();
}

/// A normal-priority task of `worker`, due at once, created at `at`.
pub fn task(worker: &str, at: i64) -> NewTask {
    NewTask {
        limit: None,
        parent: None,
        worker: worker.into(),
        action: "run".into(),
        data: "{}".into(),
        priority: Priority::Normal,
        max_attempts: 3,
        started_by: None,
        run_after: at,
        created_at: at,
    }
}

/// A line with `status` and `message`.
pub fn line(status: &str, message: &str) -> LogLine {
    LogLine::new(status, 0, 0, 0, "", message)
}

/// Inserts `n` tasks like `t` with the creation line `created`.
pub fn insert(store: &mut dyn Store, t: &NewTask, n: usize) -> Vec<i64> {
    store
        .insert_tasks(t, n, &line("pending", "created"))
        .unwrap()
}

/// The ids of `claimed`, in claim order.
pub fn ids(claimed: &[ClaimedTask]) -> Vec<i64> {
    claimed.iter().map(|c| c.task.id).collect()
}

/// Claims up to `limit` tasks for `owner` at `now`, each with the start line
/// `started <id>`.
pub fn claim(store: &mut dyn Store, owner: &str, now: i64, limit: usize) -> Vec<ClaimedTask> {
    store
        .claim(&Claim {
            finishes: &[],
            owner,
            now,
            limit,
            excluded_workers: &[],
            start_line: &|t| line("running", &format!("started {}", t.id)),
        })
        .unwrap()
        .1
}

/// The finish of task `id` by `owner` with `outcome` at `at`, whose last line has
/// `status`.
pub fn finish(id: i64, owner: &str, outcome: Outcome, status: &str, at: i64) -> Finish {
    Finish {
        id,
        owner: owner.into(),
        outcome,
        progress: 100,
        processed: 0,
        total: 0,
        message: format!("ended {status}"),
        at,
        lines: vec![line(status, &format!("ended {status}"))],
    }
}

/// A completed outcome.
pub fn completed() -> Outcome {
    Outcome::Completed {
        result: "null".into(),
    }
}

/// The texts of task `id`'s log lines.
pub fn texts(store: &dyn Store, id: i64) -> Vec<String> {
    store
        .log_lines(id, 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|l| l.text)
        .collect()
}

//! Worker schedules: when a worker's scheduled action runs by itself.
//!
//! * [`spec`] — what a schedule is ([`Spec`], stored as JSON), validation, parsing from
//!   command-line inputs, [`describe`].
//! * [`next_run`] — [`next_after`], the pure "when next" function, in the configured
//!   timezone and correct across daylight-saving changes.
//! * [`tick`] — [`tick()`], firing every due schedule (the service calls it with the
//!   real time, tests with chosen instants).
//! * [`manage`] — set / remove / pause / resume with every check before storing, and
//!   [`ScheduleView`], the shown form.
//!
//! The at-most-once guarantee per slot lives in storage
//! (`stask_storage::Store::fire_schedule`, one `BEGIN IMMEDIATE` transaction).

pub mod manage;
pub mod next_run;
pub mod spec;
pub mod tick;

pub use manage::{ScheduleView, TimeView};
pub use next_run::{next_after, resolve_local};
pub use spec::{describe, Spec, SpecInput, TimeOfDay, MANUAL_DESCRIPTION};
pub use tick::{tick, Fired, FiredResult, TickReport};

#[cfg(test)]
mod tests;

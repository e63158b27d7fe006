//! Worker schedules: when a worker's scheduled action runs by itself.
//!
//! * [`spec`] — what a schedule is ([`Spec`], stored as JSON), validation, parsing from
//!   command-line inputs, [`describe`].
//! * [`next_run`] — [`next_after`], the pure "when next" function, in the configured
//!   timezone and correct across daylight-saving changes.
//! * [`tick`] — [`tick()`], firing every due schedule (the service calls it with the
//!   real time, tests with chosen instants).
//!
//! Setting, changing, pausing and removing a schedule are operations of the domain
//! layer ([`crate::ops::schedules`]); the shown form is [`crate::views::ScheduleView`].
//!
//! The at-most-once guarantee per slot lives in storage
//! (`stask_storage::Store::fire_schedule`, one `BEGIN IMMEDIATE` transaction).

pub mod next_run;
pub mod spec;
pub mod tick;

pub use next_run::{next_after, resolve_local};
pub use spec::{
    describe, describe_code, DescriptionCode, InputNames, Spec, SpecError, SpecInput, TimeOfDay,
    MANUAL_DESCRIPTION,
};
pub use tick::{tick, Fired, FiredResult, TickReport};

#[cfg(test)]
mod tests;

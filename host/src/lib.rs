//! # stask host
//!
//! The library behind the `stask` binary, in layers (ARCHITECTURE.md has the map):
//!
//! * front-ends: [`cli`] (commands and their text or `--json` output) and [`http`]
//!   (the JSON API and the web interface). They parse input, call the domain layer and
//!   render what it returns, JSON through the types of [`views`];
//! * the domain layer, [`ops`]: every operation on tasks, workers, schedules, users and
//!   tokens, written once, with failures as [`problem::Problem`]s;
//! * running tasks: [`engine`], [`runner`], [`service`], [`recovery`];
//! * plugins: [`discovery`], [`probe`], [`loader`], [`safety`], [`fingerprint`];
//! * schedules ([`schedule`]), statistics ([`stats`]), Prometheus metrics ([`metrics`]),
//!   configuration ([`config`]) and the home directory ([`home`]); everything is stored
//!   through `stask_storage::Store`.

pub mod auth;
pub mod check;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod engine;
pub mod fingerprint;
pub mod home;
pub mod http;
pub mod limits;
pub mod loader;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod privacy;
pub mod probe;
pub mod problem;
pub mod process_tree;
pub mod protocol_fd;
pub mod recovery;
pub mod runner;
pub mod safety;
pub mod sandbox;
pub mod schedule;
pub mod secrets;
pub mod sensitive;
pub mod service;
pub mod signals;
pub mod stats;
pub mod task_log;
pub mod views;
pub mod web_assets;

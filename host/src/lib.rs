//! # stask host
//!
//! The library behind the `stask` binary: the home directory, the worker registry
//! kept in step with the plugins directory, and the child-process modes (probe) that
//! keep plugin code out of the host process. See ARCHITECTURE.md for the map.

pub mod auth;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod engine;
pub mod fingerprint;
pub mod home;
pub mod http;
pub mod loader;
pub mod probe;
pub mod problem;
pub mod protocol_fd;
pub mod recovery;
pub mod runner;
pub mod safety;
pub mod schedule;
pub mod sensitive;
pub mod service;
pub mod settings;
pub mod signals;
pub mod stats;
pub mod task_clean;
pub mod task_create;
pub mod task_log;
pub mod task_ops;
pub mod task_view;
pub mod web_assets;
pub mod worker_ops;
pub mod workers_view;

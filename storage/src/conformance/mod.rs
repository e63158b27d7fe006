//! The conformance suite: what every backend must do, as functions that take a fresh
//! store. Each backend's tests call every case (see `storage/tests/`).

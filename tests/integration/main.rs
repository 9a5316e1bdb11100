//! Integration tests: the real `cairn` binary on real directories, and
//! real DuckDB files made by the generator (`tests/hitkeep_gen.py`).
//! One test binary, a module per concern.

mod bad_input;
mod common;
mod crash;
mod drill;
mod fault_injection;
mod hitkeep_boundary;
mod hitkeep_restore;
mod import;
mod lifecycle;
mod live_capture;
mod locking;
mod remote;
mod repair;
mod restore_safety;
mod roundtrip;
mod s3_server;

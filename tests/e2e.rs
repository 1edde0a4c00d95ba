//! End-to-end tests: the real `mvault` binary against real stores (local directory, and
//! local S3, GCS and Azure servers started by `scripts/emulators.sh`).

mod behaviour;
mod cli;
mod common;
mod hostile;

//! End-to-end tests, one binary (as ripgrep's `tests/tests.rs`): the real `mvault` binary
//! against real stores (a local directory, an in-process fake OSS, and local S3, GCS and Azure
//! servers started by `scripts/emulators.sh`). Helpers live in [`common`] only.
//!
//! - [`behaviour`]: one suite instantiated per backend, cases registered by capability;
//! - [`cli`]: backend-independent command-line behaviour, `--help` of every command;
//! - [`cloudsec`]: server-side encryption options on the wire, least privilege (request logs);
//! - [`format`]: golden vectors of `docs/FORMAT.md` read from the document itself;
//! - [`cache`]: the local cache, warm pulls, `cache` commands, `mvault run`;
//! - [`faults`]: injected network faults, `kill -9`, `--limit-rate`, permanent errors (S3);
//! - [`ops`]: config file and providers, aliases, verify, gc, prune, usage, sync;
//! - [`oss`]: the OSS protocol as mvault sends it, checked by [`oss_fake`];
//! - [`hostile`]: a bucket, cache or target under an attacker's control;
//! - [`serve`]: `mvault serve`, its pages, API, token rule and read-only promise.
//! - [`signing`]: signed versions, trusted keys, signature export (issue 16);
//! - [`crypt`]: client-side encryption (keys, sealed objects, refusals, sync re-encryption).

mod behaviour;
mod cache;
mod cli;
mod cloudsec;
mod common;
mod crypt;
mod faults;
mod format;
mod hostile;
mod ops;
mod oss;
mod oss_fake;
mod serve;
mod signing;

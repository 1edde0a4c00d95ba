//! The hostile-bucket and hostile-host suite (trust hardening): every test plays an attacker
//! who controls the bucket, a co-tenant on the machine, or a careless user, and checks that
//! mvault refuses cleanly, with the documented exit code, losing nothing.
//!
//! - [`place`]: pulling into a target directory and the local cache (state records, modes,
//!   damaged blobs, symlinks, prune races, odd names);
//! - [`gc`]: gc racing pushes, healing lost chunks, grace limits;
//! - [`inputs`]: remote URLs and secrets, oversized objects, aliases, exit codes by cause.

mod gc;
mod inputs;
mod place;

//! See the parent module.

#[allow(unused_imports)]
use crate::common::{Backend, Env, noise, write_file};

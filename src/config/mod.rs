//! Configuration: the owner's `business.toml` and the process environment.

pub mod business;
pub mod settings;

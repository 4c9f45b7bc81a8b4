//! Configuration: the owner's `business.toml` and the process environment.

pub mod business;
pub mod directory;
pub mod fragments;
pub mod settings;

#[cfg(test)]
mod bounds_tests;

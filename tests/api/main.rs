//! One integration-test binary (one link, shared helpers), zero2prod style.

mod clients;
mod helpers;
mod quotes;
mod turns;
mod webhook;

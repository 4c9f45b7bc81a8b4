//! Ports not yet written for Postgres. Each file is one port whose every
//! method fails with `not_yet`; implementing a port deletes its file here.

mod alerts;
mod conversations;
mod jobs;
mod maintenance;
mod outbox;

use crate::store::StoreError;

fn not_yet(method: &'static str) -> StoreError {
    tracing::error!(method, "not implemented on Postgres yet");
    StoreError::NotFound(method)
}

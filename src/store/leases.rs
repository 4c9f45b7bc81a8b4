//! The lease port: keeping a claim alive while its work runs, and giving
//! it back.
//!
//! Leases are short (`LEASE_SECS`, 15 s by default) so that the work of an
//! instance that died is taken over quickly; a heartbeat renews them every
//! third of the lease while a turn or a job runs. A renewal names the
//! claim it renews (the conversation's lease token, a job's attempt
//! number), so a late renewal or release by a claim that was lost never
//! touches the claim that replaced it.

use std::time::Duration;

use async_trait::async_trait;

use super::{ConversationId, StoreError};

/// A running job as one claim made it: a job taken over after its lease
/// expired is claimed again with one more attempt, so `(id, attempts)`
/// names one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobClaim {
    pub id: i64,
    pub attempts: u32,
}

#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// Extends the conversation's lease to `lease` from now, if `token`
    /// still holds it (even past its expiry, as long as nobody claimed it
    /// since). False when the lease was lost: released, or taken over.
    async fn renew_lease(&self, id: ConversationId, token: &str, lease: Duration)
    -> Result<bool, StoreError>;

    /// Extends the leases of these running jobs to `lease` from now;
    /// returns the claims that still held (the others were taken over or
    /// finished).
    async fn renew_job_leases(&self, jobs: &[JobClaim], lease: Duration)
    -> Result<Vec<JobClaim>, StoreError>;

    /// Gives claimed jobs that never started back to the queue, as if never
    /// claimed (the attempt is not counted): what a stopping runner does
    /// with the rest of its batch. Returns how many went back.
    async fn release_jobs(&self, jobs: &[JobClaim]) -> Result<u64, StoreError>;
}

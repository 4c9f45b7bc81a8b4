//! Background work: turning stored texts into replies, and delivering them.
//!
//! [`turns::Engine`] runs one turn of one conversation; [`worker::TurnWorker`]
//! decides which conversation runs next, one turn at a time per conversation.
//! [`dispatch::Dispatcher`] is the one path by which a stored text leaves,
//! through its conversation's channel.

pub mod call;
pub mod dispatch;
pub mod lease;
pub mod payload;
pub mod plan;
pub mod receipts;
pub mod runner;
pub mod turns;
pub mod verification;
pub mod worker;

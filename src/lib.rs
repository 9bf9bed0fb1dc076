//! layer1: a low-latency market-data ingestion engine.
//!
//! Thread layout (see README.md and docs/architecture.md):
//! - feed threads (pinned): one `mio` event loop each over many vendor WebSockets; frames are
//!   parsed into fixed-layout ticks, validated, and handed to the producer over bounded queues;
//! - the producer thread (pinned): encodes records and produces them with rdkafka, accounting for
//!   every delivery, journaling to disk while Kafka is unreachable;
//! - the control thread: Redis `SUBSCRIBE system:commands` (backfill triggers);
//! - the http thread: `/metrics`, `/health`, the status page.
//!
//! `main.rs` only parses the command line and calls into [`engine`] and the subcommand modules.

pub mod affinity;
pub mod backfill;
pub mod calendar;
pub mod capture;
pub mod chaos;
pub mod clock;
pub mod config;
pub mod control;
pub mod decode;
pub mod demo;
pub mod encode;
pub mod engine;
pub mod error;
pub mod fasthash;
pub mod feed;
pub mod http;
pub mod instruments;
pub mod journal;
pub mod latency;
pub mod logging;
pub mod market_status;
pub mod metrics;
pub mod parsers;
pub mod pipeline;
mod prefetch;
pub mod producer;
pub mod rawpool;
pub mod redact;
pub mod replay;
pub mod routing;
pub mod services;
pub mod shutdown;
pub mod sim;
pub mod status;
pub mod subscribe;
#[cfg(test)]
mod test_rng;
pub mod tick;
pub mod validate;
pub mod vendor;

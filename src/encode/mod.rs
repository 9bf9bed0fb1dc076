//! Encoders of a [`Tick`](crate::tick::Tick) into the forms that leave the engine.
//!
//! [`json`] is the `market.ticks` payload and `layer1 decode`'s output (schema in
//! `docs/tick-schema.md`); [`binary`] is the compact form `KAFKA_TICK_FORMAT=binary` selects for
//! `market.ticks` (layout in the same document).

pub mod binary;
pub mod json;

pub use binary::{decode_binary, encode_binary};
pub use json::encode_json;

//! Encoders of a [`Tick`](crate::tick::Tick) into the forms that leave the engine.
//!
//! [`json`] is the `market.ticks` payload and `layer1 decode`'s output (schema in
//! `docs/tick-schema.md`).

pub mod json;

pub use json::encode_json;

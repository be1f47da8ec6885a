//! Chrysalis wire formats, with no I/O: everything here is bytes in, bytes
//! out, so the node, the platform, the bot and the mini-app (through
//! wasm32) share one implementation.
//!
//! - [`ohttp`]: sealing requests and streamed responses (RFC 9458, chunked OHTTP).
//! - [`sealed`]: the plaintexts inside them.
//! - [`attestation`]: the node's attestation document and the client's policy.
//! - [`receipt`]: signed usage receipts.
//! - [`money`]: nanoTON amounts and prices.
//! - [`registry`]: a node's registration with the platform.
//!
//! Randomness is passed in (`&mut impl CryptoRng`), never taken from the
//! environment.

pub mod attestation;
pub mod money;
pub mod ohttp;
pub mod receipt;
pub mod registry;
pub mod sealed;
#[cfg(test)]
mod test_vectors;
mod varint;

pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use hpke::rand_core;

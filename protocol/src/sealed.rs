//! The plaintexts inside a sealed chat: what a client seals, and the events
//! a node seals back, one per chunk.

use serde::{Deserialize, Serialize};

/// Media type of a sealed request body (chunked OHTTP request).
pub const REQUEST_MEDIA_TYPE: &str = "message/ohttp-chunked-req";
/// Media type of a sealed response body (chunked OHTTP response).
pub const RESPONSE_MEDIA_TYPE: &str = "message/ohttp-chunked-res";
/// Clear HTTP trailer of a sealed response: the signed receipt, base64url.
pub const RECEIPT_TRAILER: &str = "chrysalis-receipt";
/// Request header through which a relay names the request id the receipt
/// must carry (32 hex digits); without it the node picks one.
pub const REQUEST_ID_HEADER: &str = "chrysalis-request-id";

/// Version of [`SealedRequest`].
pub const SEALED_REQUEST_VERSION: u32 = 1;

/// What a client seals: an OpenAI chat request and when it was sent (the
/// node refuses requests outside its replay window).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedRequest {
    pub v: u32,
    /// Unix seconds at the client.
    pub sent_at: u64,
    /// The OpenAI chat completions request body.
    pub chat: serde_json::Value,
}

/// One event of a sealed answer; every chunk holds exactly one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SealedEvent {
    /// More answer text.
    Delta { content: String },
    /// The answer is complete (always the final chunk).
    Done { finish_reason: String, usage: SealedUsage, receipt: String },
    /// The request failed after it was opened (final chunk; no receipt, no charge).
    Error { message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub cached_tokens: u32,
}

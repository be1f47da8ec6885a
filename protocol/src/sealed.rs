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
/// Request header with the most tokens (prompt plus answer) a request may
/// bill. A node refuses a longer prompt and stops the answer at the budget,
/// so a relay can hold the request's maximum price before relaying it.
pub const TOKEN_BUDGET_HEADER: &str = "chrysalis-max-tokens";
/// Response header of the platform relay: the id of the provider whose
/// sealed answer follows (the client opens it with that request's context).
pub const PROVIDER_HEADER: &str = "chrysalis-provider";

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

/// Most candidates one relayed chat may name.
pub const MAX_RELAY_CANDIDATES: usize = 4;

/// A chat for the platform relay: the same chat sealed separately to one or
/// more providers. The platform tries them best-scored first and moves on to
/// the next only while nothing has been streamed; one candidate pins the
/// provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayRequest {
    /// Token budget (prompt plus answer); the platform holds its price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    pub candidates: Vec<RelayCandidate>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayCandidate {
    pub provider_id: i64,
    /// The sealed request (`message/ohttp-chunked-req` bytes), base64url without padding.
    pub sealed: String,
}

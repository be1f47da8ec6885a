//! Talking to a provider node privately: fetch and check its attestation
//! document, seal a chat to its key, open the streamed answer chunk by
//! chunk, and verify the receipt against the attested signing key; directly
//! ([`NodeClient`]) or through the platform's relay ([`PlatformClient`]).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use chrysalis_protocol::attestation::{
    AttestationDocument, AttestationError, Policy, VerifiedNode, MAX_DOCUMENT_BYTES,
};
use chrysalis_protocol::money::Prices;
use chrysalis_protocol::ohttp::{ChunkedResponseOpener, OhttpError, ProductAead, ProductClientRequest};
use chrysalis_protocol::rand_core::UnwrapErr;
use chrysalis_protocol::receipt::{Receipt, ReceiptError, SignedReceipt};
use chrysalis_protocol::sealed::{
    RelayCandidate, RelayRequest, SealedEvent, SealedRequest, SealedUsage, PROVIDER_HEADER, RECEIPT_TRAILER,
    REQUEST_MEDIA_TYPE, SEALED_REQUEST_VERSION,
};
use http_body_util::BodyExt;
use serde::Deserialize;

/// Largest sealed chunk a client buffers (an answer event is far smaller).
const MAX_CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not reach the node: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the node answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("{0}")]
    Attestation(#[from] AttestationError),
    #[error("sealing: {0}")]
    Sealed(#[from] OhttpError),
    #[error("the node's answer broke the protocol: {0}")]
    Protocol(String),
    #[error("receipt: {0}")]
    Receipt(#[from] ReceiptError),
    #[error("the node could not answer: {0}")]
    Node(String),
}

/// A finished sealed chat.
#[derive(Debug)]
pub struct ChatOutcome {
    pub text: String,
    pub finish_reason: String,
    pub usage: SealedUsage,
    /// The receipt, verified against the node's attested signing key.
    pub receipt: Receipt,
    /// Opened chunks that carried text.
    pub text_chunks: usize,
    /// The clear receipt trailer, when the transport delivered it.
    pub trailer_receipt: Option<String>,
}

pub struct NodeClient {
    http: reqwest::Client,
    base_url: String,
}

impl NodeClient {
    pub fn new(base_url: &str) -> Self {
        Self::with_http(reqwest::Client::new(), base_url)
    }

    /// A client sharing `http`'s connection pool and settings.
    pub fn with_http(http: reqwest::Client, base_url: &str) -> Self {
        Self { http, base_url: base_url.trim_end_matches('/').to_owned() }
    }

    /// Fetches the node's attestation document and checks it against `policy`.
    pub async fn attest(&self, policy: &Policy) -> Result<VerifiedNode, ClientError> {
        Ok(self.document().await?.verify(policy)?)
    }

    /// Fetches the node's attestation document, unchecked. Reading stops as
    /// soon as it passes the size limit, whatever length the node announced.
    pub async fn document(&self) -> Result<AttestationDocument, ClientError> {
        let response = self.http.get(format!("{}/v1/attestation", self.base_url)).send().await?;
        let mut response = check_status(response).await?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(AttestationError::TooLarge.into());
            }
        }
        Ok(AttestationDocument::parse(&body)?)
    }

    /// Seals `chat` (an OpenAI chat request body) to `node`, streams the
    /// answer through `on_text` as it is opened, and returns the outcome with
    /// its verified receipt.
    pub async fn chat(
        &self,
        node: &VerifiedNode,
        chat: serde_json::Value,
        on_text: impl FnMut(&str),
    ) -> Result<ChatOutcome, ClientError> {
        let sealed = SealedChat::seal(node, chat)?;
        let response = self
            .http
            .post(format!("{}/v1/sealed/chat/completions", self.base_url))
            .header(reqwest::header::CONTENT_TYPE, REQUEST_MEDIA_TYPE)
            // HTTP/1.1 servers send the receipt trailer only to clients that accept trailers.
            .header(reqwest::header::TE, "trailers")
            .body(sealed.body.clone())
            .send()
            .await?;
        sealed.read_answer(node, check_status(response).await?, on_text).await
    }
}

/// A chat sealed to one node, with what it takes to open that node's answer.
pub struct SealedChat {
    /// The `message/ohttp-chunked-req` body.
    pub body: Vec<u8>,
    opener: ChunkedResponseOpener<ProductAead>,
}

impl SealedChat {
    pub fn seal(node: &VerifiedNode, chat: serde_json::Value) -> Result<Self, ClientError> {
        let sent_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let plaintext = serde_json::to_vec(&SealedRequest { v: SEALED_REQUEST_VERSION, sent_at, chat })
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let (body, opener) =
            ProductClientRequest::seal_chunked(&node.key_config, &plaintext, &mut UnwrapErr(getrandom::SysRng))?;
        Ok(Self { body, opener })
    }

    /// Opens the answer in `response` chunk by chunk, passing text to
    /// `on_text`, and verifies the final receipt against `node`.
    pub async fn read_answer(
        self,
        node: &VerifiedNode,
        response: reqwest::Response,
        mut on_text: impl FnMut(&str),
    ) -> Result<ChatOutcome, ClientError> {
        let mut opener = self.opener;
        let mut body = http::Response::<reqwest::Body>::from(response).into_body();
        let mut text = String::new();
        let mut text_chunks = 0;
        let mut trailer_receipt = None;
        let mut buffered = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if let Some(trailers) = frame.trailers_ref() {
                trailer_receipt = trailers.get(RECEIPT_TRAILER).and_then(|v| v.to_str().ok()).map(str::to_owned);
                continue;
            }
            let Ok(data) = frame.into_data() else { continue };
            buffered += data.len();
            for chunk in opener.push(&data)? {
                buffered = 0;
                match parse_event(&chunk)? {
                    SealedEvent::Delta { content } => {
                        on_text(&content);
                        text.push_str(&content);
                        text_chunks += 1;
                    }
                    _ => return Err(ClientError::Protocol("only the final chunk may end the answer".into())),
                }
            }
            if buffered > MAX_CHUNK_BYTES {
                return Err(ClientError::Protocol("a sealed chunk exceeds the size limit".into()));
            }
        }
        match parse_event(&opener.finish()?)? {
            SealedEvent::Done { finish_reason, usage, receipt } => {
                let signed = SignedReceipt::from_base64(&receipt)?;
                let receipt = signed.verify(&node.signing_key)?.clone();
                if receipt.model_sha256 != node.model_sha256 {
                    return Err(ClientError::Protocol("the receipt names another model than the attested one".into()));
                }
                if (receipt.prompt_tokens, receipt.completion_tokens) != (usage.prompt_tokens, usage.completion_tokens)
                {
                    return Err(ClientError::Protocol("the receipt's token counts differ from the answer's".into()));
                }
                Ok(ChatOutcome { text, finish_reason, usage, receipt, text_chunks, trailer_receipt })
            }
            SealedEvent::Error { message } => Err(ClientError::Node(message)),
            SealedEvent::Delta { .. } => Err(ClientError::Protocol("the final chunk must end the answer".into())),
        }
    }
}

/// A provider as the platform lists it. The platform is not trusted with
/// the keys: callers check `attestation` against their own policy.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderListing {
    pub id: i64,
    pub model: String,
    pub prices: Prices,
    pub attestation: AttestationDocument,
    pub score: f64,
}

/// Talking to the Chrysalis platform, which relays sealed chats to
/// providers and charges the account that `authorization` names.
pub struct PlatformClient {
    http: reqwest::Client,
    base_url: String,
    authorization: String,
}

impl PlatformClient {
    /// `authorization` is the whole `Authorization` header value, e.g.
    /// `tma <initData>` for a mini-app user.
    pub fn new(base_url: &str, authorization: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            authorization: authorization.to_owned(),
        }
    }

    /// Providers that currently take requests, best-scored first.
    pub async fn providers(&self) -> Result<Vec<ProviderListing>, ClientError> {
        let response = self
            .http
            .get(format!("{}/api/providers", self.base_url))
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .send()
            .await?;
        #[derive(Deserialize)]
        struct Listing {
            providers: Vec<ProviderListing>,
        }
        let listing: Listing = check_status(response).await?.json().await?;
        Ok(listing.providers)
    }

    /// Seals `chat` to every candidate (a provider id and its verified
    /// document), sends them through the relay with a token budget, and
    /// opens the answer of whichever provider the platform reached.
    pub async fn chat(
        &self,
        candidates: &[(i64, &VerifiedNode)],
        max_tokens: Option<u32>,
        chat: serde_json::Value,
        on_text: impl FnMut(&str),
    ) -> Result<PlatformChatOutcome, ClientError> {
        let mut sealed = Vec::with_capacity(candidates.len());
        let mut request = RelayRequest { max_tokens, candidates: Vec::with_capacity(candidates.len()) };
        for &(provider_id, node) in candidates {
            let chat = SealedChat::seal(node, chat.clone())?;
            request.candidates.push(RelayCandidate { provider_id, sealed: b64().encode(&chat.body) });
            sealed.push((provider_id, node, chat));
        }
        let response = self
            .http
            .post(format!("{}/api/chat", self.base_url))
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .header(reqwest::header::TE, "trailers")
            .json(&request)
            .send()
            .await?;
        let response = check_status(response).await?;
        let answered: i64 = response
            .headers()
            .get(PROVIDER_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ClientError::Protocol(format!("the platform's answer lacks {PROVIDER_HEADER}")))?;
        let index = sealed
            .iter()
            .position(|(id, _, _)| *id == answered)
            .ok_or_else(|| ClientError::Protocol("the platform answered from a provider that was not asked".into()))?;
        let (provider_id, node, chat) = sealed.swap_remove(index);
        let outcome = chat.read_answer(node, response, on_text).await?;
        Ok(PlatformChatOutcome { provider_id, outcome })
    }
}

/// A sealed chat answered through the platform.
#[derive(Debug)]
pub struct PlatformChatOutcome {
    pub provider_id: i64,
    pub outcome: ChatOutcome,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn parse_event(bytes: &[u8]) -> Result<SealedEvent, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::Protocol(format!("unreadable event: {e}")))
}

async fn check_status(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or("no error message").to_owned();
    Err(ClientError::Status { status, message })
}

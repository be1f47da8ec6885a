//! The sealed relay: `POST /api/chat`.
//!
//! The client sends the same chat sealed separately to one or more
//! providers. The platform holds the dearest candidate's maximum price for
//! the token budget, then tries the candidates best-scored first. A
//! candidate that fails before its first byte is skipped for the next; once
//! a byte has gone to the client the relay is committed to that provider.
//! Chunks are forwarded as they arrive. At the end the node's clear receipt
//! trailer is checked against the key the request was sealed to and the
//! request id the platform chose; only then is the user charged, the
//! provider credited minus commission and the rest released, in one
//! transaction, before the client sees the end of the body. Without a valid
//! receipt the whole hold is released and the provider's score drops.
//!
//! If the client goes away mid-answer the relay keeps reading the node to
//! its receipt and charges for the answer that was produced: otherwise
//! reading every chunk and disconnecting before the last would make answers
//! free.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrysalis_protocol::attestation::VerifiedNode;
use chrysalis_protocol::receipt::{Receipt, RequestId, SignedReceipt};
use chrysalis_protocol::sealed::{
    RelayRequest, MAX_RELAY_CANDIDATES, PROVIDER_HEADER, RECEIPT_TRAILER, REQUEST_ID_HEADER, REQUEST_MEDIA_TYPE,
    RESPONSE_MEDIA_TYPE, TOKEN_BUDGET_HEADER,
};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::ledger::{self, Capture, HoldRequest, LedgerError, Release};
use crate::providers::{self, without_url, ChatResult, Provider};
use crate::{random_bytes, AppState};

/// How long a provider may take to answer with headers and its first byte.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the stream may stall between two frames.
const FRAME_TIMEOUT: Duration = Duration::from_secs(120);

/// A candidate ready to try: the provider as registered and the bytes sealed to it.
struct Candidate {
    provider: Provider,
    node: VerifiedNode,
    sealed: Bytes,
}

pub async fn chat(
    State(state): State<AppState>,
    Caller(user): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if let Err(limited) = state.chat_limiter.admit(user.id) {
        state.metrics.refuse("rate_limited");
        return Err(limited);
    }
    let body = body.map_err(|r| ApiError::from_body(r, state.settings.max_body_bytes))?;
    let request: RelayRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("the chat request is malformed: {e}")))?;
    let token_budget = request.max_tokens.unwrap_or(state.settings.default_max_tokens);
    if token_budget == 0 || token_budget > state.settings.max_tokens_limit {
        return Err(ApiError::invalid(format!("max_tokens must be 1 to {}", state.settings.max_tokens_limit)));
    }
    let candidates = load_candidates(&state, request).await?;

    // The hold, the attempts and the settlement run in a task of their own,
    // so a client that leaves at any point cannot strand a hold half-done.
    let (reply, response) = oneshot::channel();
    let relays = state.relays.clone();
    relays.spawn(hold_and_relay(state, user.id, token_budget, candidates, reply));
    response.await.unwrap_or_else(|_| Err(ApiError::internal()))
}

/// Holds the chat's maximum price, tries the candidates in order, answers
/// `reply` with the first stream (or the error), then relays and settles.
async fn hold_and_relay(
    state: AppState,
    user_id: i64,
    token_budget: u32,
    candidates: Vec<Candidate>,
    reply: oneshot::Sender<Result<Response, ApiError>>,
) {
    let mut hold_amount = 0u64;
    for candidate in &candidates {
        let Some(price) = candidate.provider.max_price(token_budget) else {
            return drop(reply.send(Err(ApiError::invalid("price overflow"))));
        };
        hold_amount = hold_amount.max(price.0);
    }
    let Ok(hold_amount) = i64::try_from(hold_amount) else {
        return drop(reply.send(Err(ApiError::invalid("price overflow"))));
    };
    let request_id = RequestId(random_bytes());
    let request_hex = request_id.to_hex();
    let hold =
        HoldRequest { request_id: &request_hex, user_id, token_budget: i64::from(token_budget), amount: hold_amount };
    if let Err(error) = ledger::hold(&state.db, &hold).await {
        if matches!(error, LedgerError::InsufficientFunds { .. }) {
            state.metrics.refuse("insufficient_funds");
        }
        return drop(reply.send(Err(error.into())));
    }

    let started = Instant::now();
    let mut attempts = 0;
    for candidate in candidates {
        attempts += 1;
        match open_upstream(&state, &candidate, &request_hex, token_budget).await {
            Ok((upstream, first)) => {
                state.metrics.time_to_first_byte_seconds.observe(started.elapsed().as_secs_f64());
                let (sender, receiver) = mpsc::channel::<ClientFrame>(32);
                if reply.send(Ok(stream_response(candidate.provider.id, receiver))).is_err() {
                    // The client left before the first byte: nothing was produced for it.
                    drop(upstream);
                    let release = Release { outcome: "cancelled", provider_id: Some(candidate.provider.id), attempts };
                    settle_failed(&state, &request_hex, &release).await;
                    return;
                }
                let relay = Relay {
                    deadline: started + state.settings.longest_chat(),
                    state,
                    request_id,
                    token_budget,
                    hold_amount,
                    attempts,
                    started,
                    provider: candidate.provider,
                    node: candidate.node,
                };
                return relay.run(upstream, first, sender).await;
            }
            Err(failure) => {
                tracing::warn!(request = %request_hex, provider = candidate.provider.id, error = %failure.reason,
                    "provider failed before the first byte");
                state.metrics.failovers.inc();
                if failure.provider_fault {
                    record(&state, candidate.provider.id, ChatResult::Failed).await;
                }
            }
        }
    }
    settle_failed(&state, &request_hex, &Release { outcome: "unreachable", provider_id: None, attempts }).await;
    let _ = reply.send(Err(ApiError::bad_gateway("no provider could take the chat; nothing was charged")));
}

/// Releases a chat's hold; a failure is logged and left to the stale-hold sweep.
async fn settle_failed(state: &AppState, request_hex: &str, release: &Release) {
    state.metrics.chat(release.outcome);
    if let Err(error) = ledger::release(&state.db, request_hex, release).await {
        tracing::error!(request = %request_hex, %error, "releasing a chat failed");
    }
}

/// The client's response: the provider's sealed stream as it is relayed.
fn stream_response(provider_id: i64, frames: mpsc::Receiver<ClientFrame>) -> Response {
    let mut response = (StatusCode::OK, Body::new(StreamBody::new(ReceiverStream::new(frames)))).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(RESPONSE_MEDIA_TYPE));
    headers.insert(header::TRAILER, HeaderValue::from_static(RECEIPT_TRAILER));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PROVIDER_HEADER, HeaderValue::from(provider_id));
    response
}

/// Folds a chat into the provider's figures; a failure to record is only
/// logged, since the chat's money must still be settled.
async fn record(state: &AppState, provider_id: i64, result: ChatResult) {
    if let Err(error) = providers::record_chat(&state.db, provider_id, result).await {
        tracing::error!(%error, provider = provider_id, "recording provider figures");
    }
}

/// Checks the candidates and orders them best-scored first.
async fn load_candidates(state: &AppState, request: RelayRequest) -> Result<Vec<Candidate>, ApiError> {
    let count = request.candidates.len();
    if count == 0 || count > MAX_RELAY_CANDIDATES {
        return Err(ApiError::invalid(format!("a chat names 1 to {MAX_RELAY_CANDIDATES} candidates")));
    }
    let mut candidates: Vec<Candidate> = Vec::with_capacity(count);
    for candidate in request.candidates {
        if candidates.iter().any(|c| c.provider.id == candidate.provider_id) {
            return Err(ApiError::invalid(format!("provider {} is named twice", candidate.provider_id)));
        }
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(candidate.sealed.as_bytes())
            .map_err(|_| ApiError::invalid("sealed must be base64url without padding"))?;
        let provider = providers::get(&state.db, candidate.provider_id)
            .await?
            .ok_or_else(|| ApiError::invalid(format!("unknown provider {}", candidate.provider_id)))?;
        if !provider.enabled {
            continue;
        }
        let Ok(node) = provider.verified(&state.settings.policy) else { continue };
        candidates.push(Candidate { provider, node, sealed: Bytes::from(sealed) });
    }
    if candidates.is_empty() {
        return Err(ApiError::unavailable("none of the chosen providers takes chats now"));
    }
    // Healthy before unhealthy, then by score; a lone candidate is the user's pick.
    candidates.sort_by(|a, b| {
        (b.provider.healthy, b.provider.score)
            .partial_cmp(&(a.provider.healthy, a.provider.score))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Ok(candidates)
}

struct Failure {
    reason: String,
    /// Whether it counts against the provider's score (a 4xx is the request's fault).
    provider_fault: bool,
}

type UpstreamBody = reqwest::Body;

/// Sends the sealed request and waits for the first data frame.
async fn open_upstream(
    state: &AppState,
    candidate: &Candidate,
    request_id: &str,
    token_budget: u32,
) -> Result<(UpstreamBody, Bytes), Failure> {
    let fault = |reason: String| Failure { reason, provider_fault: true };
    let url = format!("{}/v1/sealed/chat/completions", candidate.provider.url.trim_end_matches('/'));
    let sent = state
        .http
        .post(url)
        .header(header::CONTENT_TYPE, REQUEST_MEDIA_TYPE)
        .header(header::TE, "trailers")
        .header(REQUEST_ID_HEADER, request_id)
        .header(TOKEN_BUDGET_HEADER, token_budget)
        .body(candidate.sealed.clone())
        .send();
    let response = tokio::time::timeout(FIRST_BYTE_TIMEOUT, sent)
        .await
        .map_err(|_| fault("no answer in time".into()))?
        .map_err(|e| fault(without_url(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(Failure { reason: format!("answered {status}"), provider_fault: !status.is_client_error() });
    }
    let mut body = http::Response::<reqwest::Body>::from(response).into_body();
    loop {
        let frame = tokio::time::timeout(FIRST_BYTE_TIMEOUT, body.frame())
            .await
            .map_err(|_| fault("no first byte in time".into()))?;
        match frame {
            None => return Err(fault("ended before the first byte".into())),
            Some(Err(e)) => return Err(fault(format!("failed before the first byte: {}", without_url(&e)))),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => return Ok((body, data)),
                _ => continue,
            },
        }
    }
}

/// A chat committed to one provider.
struct Relay {
    state: AppState,
    request_id: RequestId,
    token_budget: u32,
    hold_amount: i64,
    attempts: i64,
    started: Instant,
    /// When the relay gives up on the stream, well before the stale-hold
    /// sweep could release a hold this relay still owns.
    deadline: Instant,
    provider: Provider,
    node: VerifiedNode,
}

/// How the upstream stream ended.
struct Ending {
    receipt: Option<String>,
    /// Why the stream broke off, as the release outcome: `provider_failed`
    /// (an error) or `timed_out` (a stall, or the chat's time ran out).
    broke_off: Option<&'static str>,
    client_left: bool,
    ttft: Option<Duration>,
}

/// What travels to the client: frames, or an error that aborts the body.
type ClientFrame = Result<Frame<Bytes>, std::io::Error>;

impl Relay {
    async fn run(self, mut upstream: UpstreamBody, first: Bytes, sender: mpsc::Sender<ClientFrame>) {
        self.state.metrics.in_flight.inc();
        let mut client_left = sender.send(Ok(Frame::data(first))).await.is_err();
        let mut ending = Ending { receipt: None, broke_off: None, client_left: false, ttft: None };
        let mut trailers = None;
        loop {
            let wait = FRAME_TIMEOUT.min(self.deadline.saturating_duration_since(Instant::now()));
            let frame = match tokio::time::timeout(wait, upstream.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => break,
                Ok(Some(Err(_))) => {
                    ending.broke_off = Some("provider_failed");
                    break;
                }
                Err(_) => {
                    ending.broke_off = Some("timed_out");
                    break;
                }
            };
            if let Some(map) = frame.trailers_ref() {
                ending.receipt = map.get(RECEIPT_TRAILER).and_then(|v| v.to_str().ok()).map(str::to_owned);
                trailers = Some(map.clone());
                continue;
            }
            // The first frame is the response nonce; the next carries the first token.
            ending.ttft.get_or_insert_with(|| self.started.elapsed());
            if !client_left && sender.send(Ok(frame)).await.is_err() {
                client_left = true;
            }
        }
        ending.client_left = client_left;
        self.settle(&ending).await;
        if ending.broke_off.is_some() {
            let _ = sender.send(Err(std::io::Error::other("the provider's answer broke off"))).await;
        } else if let Some(trailers) = trailers {
            let _ = sender.send(Ok(Frame::trailers(trailers))).await;
        }
        self.state.metrics.in_flight.dec();
    }

    /// Charges by the receipt, or releases the hold; never both, never twice.
    async fn settle(&self, ending: &Ending) {
        let request_hex = self.request_id.to_hex();
        let receipt = match &ending.receipt {
            None => Err(ending.broke_off.unwrap_or("no_receipt")),
            Some(text) => self.check_receipt(text).map_err(|problem| {
                tracing::warn!(request = %request_hex, provider = self.provider.id, problem, "receipt refused");
                "bad_receipt"
            }),
        };
        let receipt = match receipt {
            Ok(receipt) => receipt,
            Err(outcome) => {
                tracing::warn!(request = %request_hex, provider = self.provider.id, outcome, "chat released without charge");
                record(&self.state, self.provider.id, ChatResult::Failed).await;
                let release = Release { outcome, provider_id: Some(self.provider.id), attempts: self.attempts };
                return settle_failed(&self.state, &request_hex, &release).await;
            }
        };
        let duration = self.started.elapsed();
        let capture = self.capture(&receipt, ending.ttft, duration);
        if let Err(error) = ledger::capture(&self.state.db, &request_hex, &capture).await {
            // The hold stays; the stale-hold sweep returns it to the user.
            return tracing::error!(request = %request_hex, %error, "charging a chat failed");
        }
        let metrics = &self.state.metrics;
        metrics.chat("answered");
        metrics.charged_nanoton.inc_by(capture.price as u64);
        metrics.commission_nanoton.inc_by(capture.commission as u64);
        let generating = duration.saturating_sub(ending.ttft.unwrap_or_default()).as_secs_f64();
        let tokens_per_second = if generating > 0.0 { f64::from(receipt.completion_tokens) / generating } else { 0.0 };
        let ttft_ms = ending.ttft.unwrap_or(duration).as_secs_f64() * 1000.0;
        record(&self.state, self.provider.id, ChatResult::Answered { ttft_ms, tokens_per_second }).await;
        tracing::info!(request = %request_hex, provider = self.provider.id, prompt_tokens = receipt.prompt_tokens,
            completion_tokens = receipt.completion_tokens, price = capture.price, client_left = ending.client_left,
            "chat charged");
    }

    /// A receipt is good when the attested key signed it for this request,
    /// this model, and no more tokens than the budget.
    fn check_receipt(&self, text: &str) -> Result<Receipt, &'static str> {
        let signed = SignedReceipt::from_base64(text).map_err(|_| "malformed")?;
        let receipt =
            signed.verify(&self.node.signing_key).map_err(|_| "signature does not verify with the attested key")?;
        if receipt.request_id != self.request_id {
            return Err("names another request");
        }
        if receipt.model_sha256 != self.node.model_sha256 {
            return Err("names another model");
        }
        if u64::from(receipt.prompt_tokens) + u64::from(receipt.completion_tokens) > u64::from(self.token_budget) {
            return Err("bills more tokens than the budget");
        }
        Ok(receipt.clone())
    }

    fn capture(&self, receipt: &Receipt, ttft: Option<Duration>, duration: Duration) -> Capture {
        let cost = self
            .provider
            .prices
            .cost(u64::from(receipt.prompt_tokens), u64::from(receipt.completion_tokens))
            .map_or(i64::MAX, |n| i64::try_from(n.0).unwrap_or(i64::MAX));
        // The hold bounds the price: the user agreed to no more.
        let price = cost.min(self.hold_amount);
        let commission =
            i64::try_from(i128::from(price) * i128::from(self.state.settings.commission_bps) / 10_000).unwrap_or(price);
        Capture {
            provider_id: self.provider.id,
            prompt_tokens: i64::from(receipt.prompt_tokens),
            completion_tokens: i64::from(receipt.completion_tokens),
            price,
            commission,
            attempts: self.attempts,
            ttft_ms: ttft.map(|t| t.as_millis() as i64),
            duration_ms: duration.as_millis() as i64,
        }
    }
}

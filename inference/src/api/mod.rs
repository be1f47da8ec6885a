//! The node's HTTP API: OpenAI-compatible chat completions, models, health
//! and metrics.

mod error;
pub mod openai;
mod sealed;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrysalis_protocol::receipt::RequestId;
use chrysalis_protocol::sealed::{REQUEST_ID_HEADER, TOKEN_BUDGET_HEADER};
use futures_util::stream::{self, Stream};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::engine::{Engine, Event, Generation, PromptError, SubmitError};
use crate::identity::{random_bytes, NodeIdentity};
use crate::metrics::{Metrics, Outcome};
use crate::replay::ReplayGuard;
pub use error::ApiError;
use openai::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Choice, ChunkChoice, Delta, UsageBody,
};

/// Everything the handlers need, passed explicitly.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub metrics: Metrics,
    pub identity: Arc<NodeIdentity>,
    pub replay: Arc<Mutex<ReplayGuard>>,
    /// The name `/v1/models` reports and answers carry.
    pub model_id: String,
    pub max_body_bytes: usize,
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/attestation", get(sealed::attestation))
        .route("/v1/sealed/chat/completions", post(sealed::chat))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Billing::from_headers(&headers).and_then(|billing| {
        let body = body.map_err(|rejection| ApiError::from_body_rejection(rejection, state.max_body_bytes))?;
        let request: ChatCompletionRequest = serde_json::from_slice(&body).map_err(ApiError::from_json)?;
        start_chat(&state, request, billing)
    });
    match started {
        Ok((request, events)) if request.stream => stream_chat(state.identity.clone(), request, events).into_response(),
        Ok((request, events)) => whole_chat(state, request, events).await,
        Err(error) => {
            state.metrics.count_request(error.outcome());
            error.into_response()
        }
    }
}

/// What a relay asks of a request's receipt: its request id (or a fresh
/// one) and the most tokens it may bill.
struct Billing {
    request_id: RequestId,
    token_budget: Option<u32>,
}

impl Billing {
    fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let request_id = match headers.get(REQUEST_ID_HEADER) {
            None => RequestId(random_bytes()),
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|v| RequestId::from_hex(v).ok())
                .ok_or_else(|| ApiError::invalid(format!("{REQUEST_ID_HEADER} must be 32 hex digits"), None))?,
        };
        let token_budget = match headers.get(TOKEN_BUDGET_HEADER) {
            None => None,
            Some(value) => {
                Some(value.to_str().ok().and_then(|v| v.parse::<u32>().ok()).filter(|&budget| budget > 0).ok_or_else(
                    || ApiError::invalid(format!("{TOKEN_BUDGET_HEADER} must be a positive integer"), None),
                )?)
            }
        };
        Ok(Self { request_id, token_budget })
    }
}

/// What a streaming or whole answer needs to describe itself.
struct Started {
    id: String,
    request_id: RequestId,
    created: u64,
    model: String,
    stream: bool,
}

/// Validates a parsed request, renders its prompt and queues it.
fn start_chat(
    state: &AppState,
    request: ChatCompletionRequest,
    billing: Billing,
) -> Result<(Started, UnboundedReceiver<Event>), ApiError> {
    let request = request.validate().map_err(|(message, param)| ApiError::invalid(message, Some(param)))?;

    let prompt = state.engine.render_chat(&request.messages).map_err(|e| match e {
        PromptError::TooLong { .. } => ApiError::context_length(e.to_string()),
        PromptError::Template => ApiError::invalid(e.to_string(), Some("messages")),
    })?;
    let prompt_tokens = prompt.len() as u32;
    let mut room = state.engine.config().ctx_size - prompt_tokens;
    if let Some(budget) = billing.token_budget {
        if prompt_tokens >= budget {
            return Err(ApiError::context_length(format!(
                "the prompt has {prompt_tokens} tokens, and the request's budget is {budget} tokens for prompt and answer"
            )));
        }
        room = room.min(budget - prompt_tokens);
    }
    let max_tokens = request.max_tokens.map_or(room, |m| m.min(room));
    let generation = Generation {
        prompt,
        max_tokens,
        sampling: request.sampling,
        stop: request.stop,
        ignore_eos: request.ignore_eos,
    };
    let events = state.engine.submit(generation).map_err(|e| match e {
        SubmitError::QueueFull { .. } => ApiError::queue_full(e.to_string()),
        SubmitError::Stopped => ApiError::unavailable(e.to_string()),
    })?;
    let started = Started {
        id: format!("chatcmpl-{}", billing.request_id.to_hex()),
        request_id: billing.request_id,
        created: unix_now(),
        model: state.model_id.clone(),
        stream: request.stream,
    };
    Ok((started, events))
}

async fn whole_chat(state: AppState, started: Started, mut events: UnboundedReceiver<Event>) -> Response {
    let mut content = String::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Text(text) => content.push_str(&text),
            Event::Done { finish_reason, usage } => {
                let body = ChatCompletion {
                    id: started.id,
                    object: "chat.completion",
                    created: started.created,
                    model: started.model,
                    choices: vec![Choice {
                        index: 0,
                        message: AssistantMessage { role: "assistant", content },
                        finish_reason: finish_reason.as_str(),
                    }],
                    usage: UsageBody::from(&usage),
                    receipt: state.identity.sign_receipt(started.request_id, &usage).to_base64(),
                };
                return Json(body).into_response();
            }
            Event::Failed(reason) => return ApiError::internal(reason).into_response(),
        }
    }
    ApiError::internal("the engine stopped before the answer was complete".into()).into_response()
}

/// Where a streamed answer is.
enum Phase {
    Opening,
    Answering,
    Closing,
    Closed,
}

/// Server-sent events in OpenAI's chunk format, ending with `[DONE]`. The
/// last chunk carries `finish_reason` and `usage`.
fn stream_chat(
    identity: Arc<NodeIdentity>,
    started: Started,
    events: UnboundedReceiver<Event>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let chunks = stream::unfold((Phase::Opening, started, events), move |(phase, started, mut events)| {
        let identity = identity.clone();
        async move {
            let chunk = |delta: Delta,
                         finish_reason: Option<&'static str>,
                         usage: Option<UsageBody>,
                         receipt: Option<String>| {
                let chunk = ChatCompletionChunk {
                    id: &started.id,
                    object: "chat.completion.chunk",
                    created: started.created,
                    model: &started.model,
                    choices: vec![ChunkChoice { index: 0, delta, finish_reason }],
                    usage,
                    receipt,
                };
                SseEvent::default().json_data(chunk).unwrap_or_default()
            };
            let (event, next) = match phase {
                Phase::Opening => {
                    let delta = Delta { role: Some("assistant"), content: Some(String::new()) };
                    (chunk(delta, None, None, None), Phase::Answering)
                }
                Phase::Answering => match events.recv().await {
                    Some(Event::Text(text)) => {
                        (chunk(Delta { content: Some(text), ..Delta::default() }, None, None, None), Phase::Answering)
                    }
                    Some(Event::Done { finish_reason, usage }) => {
                        let receipt = identity.sign_receipt(started.request_id, &usage).to_base64();
                        let last = chunk(
                            Delta::default(),
                            Some(finish_reason.as_str()),
                            Some(UsageBody::from(&usage)),
                            Some(receipt),
                        );
                        (last, Phase::Closing)
                    }
                    Some(Event::Failed(reason)) => (error_event(&reason), Phase::Closing),
                    None => (error_event("the engine stopped before the answer was complete"), Phase::Closing),
                },
                Phase::Closing => (SseEvent::default().data("[DONE]"), Phase::Closed),
                Phase::Closed => return None,
            };
            Some((Ok(event), (next, started, events)))
        }
    });
    Sse::new(chunks).keep_alive(KeepAlive::default())
}

fn error_event(message: &str) -> SseEvent {
    SseEvent::default().data(json!({"error": {"message": message, "type": "server_error"}}).to_string())
}

async fn models(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": state.model_id, "object": "model", "created": 0, "owned_by": "chrysalis"}],
    }))
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    let config = state.engine.config();
    Json(json!({
        "status": "ok",
        "model": state.model_id,
        "slots": config.parallel,
        "ctx_size": config.ctx_size,
        "queue_depth": state.engine.queue_depth(),
        "queue_capacity": config.queue_capacity,
    }))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.metrics.queue_depth.set(state.engine.queue_depth() as i64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
}

impl ApiError {
    fn outcome(&self) -> Outcome {
        if self.is_queue_full() {
            Outcome::QueueFull
        } else {
            Outcome::Invalid
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

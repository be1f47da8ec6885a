//! The sealed endpoint: chunked OHTTP in, chunked OHTTP out.
//!
//! The request is opened, checked against the replay window, and run like a
//! plain one. The answer goes back as one sealed chunk per event; the final
//! chunk carries the signed receipt, which is also sent in the clear as the
//! HTTP trailer `chrysalis-receipt` so a relay can charge without opening
//! anything. Failures before opening are answered in the clear with generic
//! messages (they cost no inference); failures after opening go back sealed.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrysalis_protocol::attestation::AttestationDocument;
use chrysalis_protocol::ohttp::{ChunkSealer, ProductAead, X25519_KEY_LEN};
use chrysalis_protocol::sealed::{
    SealedEvent, SealedRequest, SealedUsage, RECEIPT_TRAILER, REQUEST_MEDIA_TYPE, RESPONSE_MEDIA_TYPE,
    SEALED_REQUEST_VERSION,
};
use futures_util::stream;
use http_body::Frame;
use http_body_util::StreamBody;
use tokio::sync::mpsc::UnboundedReceiver;

use super::openai::ChatCompletionRequest;
use super::{start_chat, unix_now, ApiError, AppState, Billing, Started};
use crate::engine::Event;
use crate::identity::{os_rng, NodeIdentity};
use crate::metrics::SealedRejection;

pub async fn attestation(State(state): State<AppState>) -> Json<AttestationDocument> {
    Json(state.identity.document.clone())
}

pub async fn chat(State(state): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    match open(&state, &headers, body) {
        Ok(response) => response,
        Err((reason, error)) => {
            state.metrics.count_sealed_rejection(reason);
            error.into_response()
        }
    }
}

type Refusal = (SealedRejection, ApiError);

fn open(state: &AppState, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Response, Refusal> {
    let malformed = |error: ApiError| (SealedRejection::Malformed, error);
    if headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) != Some(REQUEST_MEDIA_TYPE) {
        return Err(malformed(ApiError::unsupported_media_type(format!(
            "a sealed request's content type is {REQUEST_MEDIA_TYPE}"
        ))));
    }
    let billing = Billing::from_headers(headers).map_err(malformed)?;
    let body = body.map_err(|r| malformed(ApiError::from_body_rejection(r, state.max_body_bytes)))?;

    let (plaintext, context) = state
        .identity
        .ohttp
        .open_chunked_request::<ProductAead>(&body)
        .map_err(|e| (SealedRejection::OpenFailed, ApiError::sealed(e.to_string())))?;
    let sealed: SealedRequest = serde_json::from_slice(&plaintext)
        .map_err(|_| malformed(ApiError::sealed("the opened request is not a sealed chat request".into())))?;
    if sealed.v != SEALED_REQUEST_VERSION {
        return Err(malformed(ApiError::sealed("unsupported sealed request version".into())));
    }
    // The encapsulated key is fresh for every request: it names the request for replay checks.
    let enc: [u8; X25519_KEY_LEN] = body[7..7 + X25519_KEY_LEN].try_into().expect("opened requests hold a key");
    state
        .replay
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .check(enc, sealed.sent_at, unix_now())
        .map_err(|e| (SealedRejection::Replay, ApiError::sealed(e.to_string())))?;

    let (prefix, sealer) =
        context.chunked(&mut os_rng()).map_err(|e| (SealedRejection::OpenFailed, ApiError::internal(e.to_string())))?;
    // From here on, errors concern the content and travel sealed.
    let started = serde_json::from_value::<ChatCompletionRequest>(sealed.chat)
        .map_err(ApiError::from_json)
        .and_then(|chat| start_chat(state, chat, billing));
    let frames = match started {
        Ok((started, events)) => answer_frames(state.identity.clone(), started, prefix, sealer, events),
        Err(error) if error.is_queue_full() => return Err((SealedRejection::QueueFull, error)),
        Err(error) => {
            state.metrics.count_request(error.outcome());
            let frames: Vec<Result<Frame<Bytes>, Infallible>> =
                vec![Ok(Frame::data(Bytes::from(prefix))), Ok(seal_error(sealer, error.message().to_owned()))];
            return Ok(sealed_response(Body::new(StreamBody::new(stream::iter(frames)))));
        }
    };
    Ok(sealed_response(Body::new(StreamBody::new(frames))))
}

fn sealed_response(body: Body) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(RESPONSE_MEDIA_TYPE));
    headers.insert(header::TRAILER, HeaderValue::from_static(RECEIPT_TRAILER));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn event_bytes(event: &SealedEvent) -> Vec<u8> {
    serde_json::to_vec(event).expect("sealed events always serialize")
}

/// The final chunk of an answer that failed after its request was opened.
fn seal_error(sealer: ChunkSealer<ProductAead>, message: String) -> Frame<Bytes> {
    Frame::data(Bytes::from(sealer.seal_final(&event_bytes(&SealedEvent::Error { message }))))
}

enum Phase {
    Prefix(Vec<u8>),
    Answering,
    Trailer(HeaderMap),
    Closed,
}

/// The response body: the nonce prefix, one sealed chunk per text event, the
/// final chunk, then the receipt trailer.
fn answer_frames(
    identity: Arc<NodeIdentity>,
    started: Started,
    prefix: Vec<u8>,
    sealer: ChunkSealer<ProductAead>,
    events: UnboundedReceiver<Event>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    let initial = (Phase::Prefix(prefix), Some(sealer), events);
    stream::unfold(initial, move |(phase, mut sealer, mut events)| {
        let identity = identity.clone();
        let request_id = started.request_id;
        async move {
            let (frame, next) = match phase {
                Phase::Prefix(prefix) => (Frame::data(Bytes::from(prefix)), Phase::Answering),
                Phase::Answering => {
                    let event = events.recv().await;
                    let active = sealer.as_mut()?;
                    match event {
                        Some(Event::Text(content)) => {
                            let chunk = active.seal_chunk(&event_bytes(&SealedEvent::Delta { content }));
                            (Frame::data(Bytes::from(chunk)), Phase::Answering)
                        }
                        Some(Event::Done { finish_reason, usage }) => {
                            let receipt = identity.sign_receipt(request_id, &usage).to_base64();
                            let done = SealedEvent::Done {
                                finish_reason: finish_reason.as_str().to_owned(),
                                usage: SealedUsage {
                                    prompt_tokens: usage.prompt_tokens,
                                    completion_tokens: usage.completion_tokens,
                                    cached_tokens: usage.cached_prompt_tokens,
                                },
                                receipt: receipt.clone(),
                            };
                            let last = sealer.take().expect("checked above").seal_final(&event_bytes(&done));
                            let mut trailers = HeaderMap::new();
                            if let Ok(value) = HeaderValue::from_str(&receipt) {
                                trailers.insert(RECEIPT_TRAILER, value);
                            }
                            (Frame::data(Bytes::from(last)), Phase::Trailer(trailers))
                        }
                        failed => {
                            let message = match failed {
                                Some(Event::Failed(message)) => message,
                                _ => "the engine stopped before the answer was complete".to_owned(),
                            };
                            (seal_error(sealer.take().expect("checked above"), message), Phase::Closed)
                        }
                    }
                }
                Phase::Trailer(trailers) => (Frame::trailers(trailers), Phase::Closed),
                Phase::Closed => return None,
            };
            Some((Ok(frame), (next, sealer, events)))
        }
    })
}

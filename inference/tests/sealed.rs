//! The sealed endpoint on the real model: OHTTP in, streamed sealed chunks
//! out, receipts, and refusals that cost no inference.

mod common;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chrysalis_client::NodeClient;
use chrysalis_inference::identity::os_rng;
use chrysalis_protocol::attestation::{AttestationDocument, Policy, VerifiedNode};
use chrysalis_protocol::ohttp::{KeyConfig, ProductClientRequest, ServerKey};
use chrysalis_protocol::receipt::SignedReceipt;
use chrysalis_protocol::sealed::{SealedRequest, REQUEST_MEDIA_TYPE, SEALED_REQUEST_VERSION};
use chrysalis_protocol::SigningKey;
use common::*;
use serde_json::{json, Value};

const QUESTION: &str = "What is the capital of France? Answer in one sentence.";

async fn attest(node: &TestNode) -> VerifiedNode {
    NodeClient::new(&node.url).attest(&Policy { allow_unattested: true, ..Policy::default() }).await.unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn seal(config: &KeyConfig, chat: Value, sent_at: u64) -> Vec<u8> {
    let plaintext = serde_json::to_vec(&SealedRequest { v: SEALED_REQUEST_VERSION, sent_at, chat }).unwrap();
    ProductClientRequest::seal_chunked(config, &plaintext, &mut os_rng()).unwrap().0
}

async fn post_sealed(node: &TestNode, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(format!("{}/v1/sealed/chat/completions", node.url))
        .header("content-type", REQUEST_MEDIA_TYPE)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_attestation_document_describes_the_node() {
    let node = shared_node();
    let body = client().get(format!("{}/v1/attestation", node.url)).send().await.unwrap().bytes().await.unwrap();
    let document = AttestationDocument::parse(&body).unwrap();
    assert_eq!(serde_json::to_value(&document.tee).unwrap(), json!({"kind": "none"}));
    let model = chrysalis_inference::identity::sha256_file(&model_path()).unwrap();
    assert_eq!(document.model_sha256, hex(&model));
    assert!(document.verify(&Policy::default()).is_err(), "tee none must need consent");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_sealed_answer_equals_the_plain_one_and_streams_in_chunks() {
    let node = shared_node();
    let plain = content(&complete(node, &greedy_request(QUESTION, 48)).await);

    let verified = attest(node).await;
    let started = Instant::now();
    let mut arrivals = Vec::new();
    let outcome = NodeClient::new(&node.url)
        .chat(&verified, greedy_request(QUESTION, 48), |_| arrivals.push(started.elapsed()))
        .await
        .unwrap();
    let total = started.elapsed();

    assert_eq!(outcome.text, plain);
    assert!(outcome.text_chunks >= 3, "{} chunks", outcome.text_chunks);
    // Tokens arrive while the answer is generated, not all at the end.
    assert!(arrivals[0] < total / 2, "first text at {:?} of {total:?}", arrivals[0]);

    // The receipt inside the seal verified against the attested key; the
    // clear trailer carries the same receipt for the relay.
    assert_eq!(outcome.receipt.completion_tokens, outcome.usage.completion_tokens);
    let trailer = SignedReceipt::from_base64(outcome.trailer_receipt.as_deref().expect("receipt trailer")).unwrap();
    assert_eq!(trailer.verify(&verified.signing_key).unwrap(), &outcome.receipt);
    let stranger = SigningKey::from_bytes(&[3; 32]).verifying_key();
    assert!(trailer.verify(&stranger).is_err());
}

#[tokio::test]
async fn a_relay_names_the_request_id_in_the_receipt() {
    let node = shared_node();
    let verified = attest(node).await;
    let body = seal(&verified.key_config, greedy_request("Hi", 4), now());
    let response = client()
        .post(format!("{}/v1/sealed/chat/completions", node.url))
        .header("content-type", REQUEST_MEDIA_TYPE)
        .header("chrysalis-request-id", "00112233445566778899aabbccddeeff")
        .header("te", "trailers")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body =
        http_body_util::BodyExt::collect(http::Response::<reqwest::Body>::from(response).into_body()).await.unwrap();
    let trailers = body.trailers().cloned().expect("trailers");
    let _ = body.to_bytes();
    let receipt = SignedReceipt::from_base64(trailers["chrysalis-receipt"].to_str().unwrap()).unwrap();
    let receipt = receipt.verify(&verified.signing_key).unwrap();
    assert_eq!(receipt.request_id.to_hex(), "00112233445566778899aabbccddeeff");
}

#[tokio::test]
async fn tampered_truncated_replayed_stale_and_misaddressed_requests_cost_no_inference() {
    let node = shared_node();
    let verified = attest(node).await;
    let good = seal(&verified.key_config, greedy_request("Hi", 4), now());
    let runs_before = metric(&metrics_text(node).await, "chrysalis_node_inference_runs_total");

    let mut tampered = good.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    let truncated = good[..good.len() - 5].to_vec();
    let stale = seal(&verified.key_config, greedy_request("Hi", 4), now() - 3600);
    let other_key = ServerKey::generate(verified.key_config.key_id, &mut os_rng()).config();
    let misaddressed = seal(&other_key, greedy_request("Hi", 4), now());

    for (name, body, expected) in [
        ("tampered", tampered, "could not be opened"),
        ("truncated", truncated, "could not be opened"),
        ("stale", stale, "window"),
        ("wrong key", misaddressed, "could not be opened"),
    ] {
        let response = post_sealed(node, body).await;
        assert_eq!(response.status(), 400, "{name}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "sealed_request_refused", "{name}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{name}: {message}");
    }
    let runs = metric(&metrics_text(node).await, "chrysalis_node_inference_runs_total");
    assert_eq!(runs, runs_before, "a refused request reached the engine");

    // The genuine request runs once; its replay is refused.
    let response = post_sealed(node, good.clone()).await;
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    let replay = post_sealed(node, good).await;
    assert_eq!(replay.status(), 400);
    let error: Value = replay.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("already received"));
    let runs = metric(&metrics_text(node).await, "chrysalis_node_inference_runs_total");
    assert_eq!(runs, runs_before + 1.0);
    let metrics = metrics_text(node).await;
    assert_eq!(metric(&metrics, "chrysalis_node_sealed_rejections_total{reason=\"open_failed\"}"), 3.0);
    assert_eq!(metric(&metrics, "chrysalis_node_sealed_rejections_total{reason=\"replay\"}"), 2.0);
}

#[tokio::test]
async fn plain_answers_carry_a_verifiable_receipt() {
    let node = shared_node();
    let verified = attest(node).await;
    let answer = complete(node, &greedy_request("Hi", 4)).await;
    let receipt = SignedReceipt::from_base64(answer["receipt"].as_str().unwrap()).unwrap();
    let receipt = receipt.verify(&verified.signing_key).unwrap();
    assert_eq!(u64::from(receipt.completion_tokens), answer["usage"]["completion_tokens"].as_u64().unwrap());
    assert_eq!(receipt.model_sha256, verified.model_sha256);
}

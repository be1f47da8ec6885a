//! A real node on the real model for the integration tests.
//!
//! Nodes run on their own threads and runtimes so that they outlive any one
//! test; tests in a binary share them and run one at a time (the suite runs
//! with `--test-threads=1`), because llama.cpp contexts sharing two cores only
//! thrash.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use chrysalis_inference::config::NodeArgs;
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{json, Value};

pub fn model_path() -> PathBuf {
    let path = std::env::var_os("CHRYSALIS_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(path.is_file(), "test model {} is missing: run scripts/fetch-model", path.display());
    path
}

pub struct TestNode {
    pub url: String,
}

pub fn start_node(parallel: u32, ctx_size: u32, queue: usize) -> TestNode {
    let model = model_path();
    let args = NodeArgs::parse_from([
        "chrysalis-node".to_owned(),
        format!("--model={}", model.display()),
        "--model-id=test-model".to_owned(),
        "--listen=127.0.0.1:0".to_owned(),
        format!("--parallel={parallel}"),
        format!("--ctx-size={ctx_size}"),
        format!("--queue={queue}"),
        "--replay-window-secs=60".to_owned(),
    ]);
    let addr = chrysalis_inference::spawn(args).expect("node starts on the test model");
    TestNode { url: format!("http://{addr}") }
}

/// The node most tests share: 4 slots of 1024 tokens.
pub fn shared_node() -> &'static TestNode {
    static NODE: OnceLock<TestNode> = OnceLock::new();
    NODE.get_or_init(|| start_node(4, 1024, 16))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(300)).build().unwrap()
}

pub fn greedy_request(question: &str, max_tokens: u32) -> Value {
    json!({
        "model": "test-model",
        "messages": [{"role": "user", "content": question}],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

pub async fn complete(node: &TestNode, body: &Value) -> Value {
    let response = client().post(format!("{}/v1/chat/completions", node.url)).json(body).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

pub fn content(answer: &Value) -> String {
    answer["choices"][0]["message"]["content"].as_str().unwrap().to_owned()
}

/// Reads a streamed answer: the `data:` payloads in order, `[DONE]` included.
pub async fn stream_events(node: &TestNode, body: &Value) -> Vec<String> {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let response = client().post(format!("{}/v1/chat/completions", node.url)).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    let mut stream = response.bytes_stream();
    while let Some(bytes) = stream.next().await {
        buffer.push_str(std::str::from_utf8(&bytes.unwrap()).unwrap());
    }
    buffer
        .split("\n\n")
        .flat_map(|event| event.lines())
        .filter_map(|line| line.strip_prefix("data: ").map(str::to_owned))
        .collect()
}

/// Concatenated `delta.content` of a streamed answer, and its last chunk.
pub fn stream_text(events: &[String]) -> (String, Value) {
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let text = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    (text, chunks.last().unwrap().clone())
}

pub async fn metrics_text(node: &TestNode) -> String {
    client().get(format!("{}/metrics", node.url)).send().await.unwrap().text().await.unwrap()
}

/// Value of one metric line (`name` or `name{labels}`), 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

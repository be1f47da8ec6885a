//! The node's HTTP API on the real model.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

const QUESTION: &str = "What is the capital of France? Answer in one sentence.";

#[tokio::test]
async fn greedy_answer_is_complete_and_streams_the_same_text() {
    let node = shared_node();
    let request = greedy_request(QUESTION, 48);

    let whole = complete(node, &request).await;
    let text = content(&whole);
    assert!(!text.trim().is_empty(), "empty answer: {whole}");
    let finish = whole["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(finish == "stop" || finish == "length", "{finish}");
    assert_eq!(whole["object"], "chat.completion");
    let usage = &whole["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 5);
    assert!(usage["completion_tokens"].as_u64().unwrap() >= 1);

    let events = stream_events(node, &request).await;
    let (streamed, last) = stream_text(&events);
    assert_eq!(streamed, text);
    assert_eq!(last["choices"][0]["finish_reason"], finish);
    assert_eq!(last["usage"]["prompt_tokens"], usage["prompt_tokens"]);
    assert_eq!(last["usage"]["completion_tokens"], usage["completion_tokens"]);
    assert!(events.len() > 4, "the answer should arrive as several chunks: {events:?}");
}

#[tokio::test]
async fn four_concurrent_requests_match_one_by_one_and_finish_sooner() {
    let node = shared_node();
    let questions = [
        "Name three colours of the rainbow.",
        "Why is the sky blue?",
        "Write a haiku about the sea.",
        "What do bees make?",
    ];
    // A fixed length makes the two runs do the same amount of work.
    let requests: Vec<Value> = questions
        .iter()
        .map(|q| {
            let mut r = greedy_request(q, 64);
            r["ignore_eos"] = json!(true);
            r
        })
        .collect();

    // Warm the slots' prompt caches so both runs start from the same state.
    for request in &requests {
        complete(node, request).await;
    }

    let started = Instant::now();
    let mut one_by_one = Vec::new();
    for request in &requests {
        one_by_one.push(content(&complete(node, request).await));
    }
    let sequential = started.elapsed();

    let started = Instant::now();
    let together = futures_util::future::join_all(requests.iter().map(|r| complete(node, r))).await;
    let concurrent = started.elapsed();

    let together: Vec<String> = together.iter().map(content).collect();
    assert_eq!(together, one_by_one);
    assert!(concurrent < sequential, "batched run took {concurrent:?}, one by one took {sequential:?}");
}

#[tokio::test]
async fn stop_strings_cut_the_answer() {
    let node = shared_node();
    let full = content(&complete(node, &greedy_request(QUESTION, 48)).await);
    let words: Vec<&str> = full.split_whitespace().collect();
    assert!(words.len() >= 3, "answer too short to test stops: {full:?}");
    let stop = words[2];
    let cut_at = full.find(stop).unwrap();

    let mut request = greedy_request(QUESTION, 48);
    request["stop"] = json!([stop]);
    let answer = complete(node, &request).await;
    assert_eq!(content(&answer), full[..cut_at]);
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");

    let (streamed, _) = stream_text(&stream_events(node, &request).await);
    assert_eq!(streamed, full[..cut_at]);
}

#[tokio::test]
async fn seeded_sampling_repeats_and_max_tokens_limits() {
    let node = shared_node();
    let request = json!({
        "messages": [{"role": "user", "content": "Tell me a short story."}],
        "temperature": 1.0, "top_p": 0.9, "top_k": 50, "min_p": 0.02, "seed": 1234,
        "repeat_penalty": 1.1, "frequency_penalty": 0.2, "presence_penalty": 0.1,
        "max_tokens": 12,
    });
    let first = complete(node, &request).await;
    let second = complete(node, &request).await;
    assert_eq!(content(&first), content(&second));
    assert_eq!(first["usage"]["completion_tokens"], 12);
    assert_eq!(first["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn second_turn_reuses_the_first_turns_cache() {
    let node = shared_node();
    let first_turn = greedy_request("Describe a cat in two sentences.", 32);
    let answer = content(&complete(node, &first_turn).await);
    let second_turn = json!({
        "messages": [
            {"role": "user", "content": "Describe a cat in two sentences."},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "And a dog?"},
        ],
        "temperature": 0, "max_tokens": 16,
    });
    let reply = complete(node, &second_turn).await;
    let usage = &reply["usage"];
    let cached = usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    assert!(cached > 10 && cached < prompt, "cached {cached} of {prompt} prompt tokens");
}

#[tokio::test]
async fn overlong_prompt_gets_a_clear_400() {
    let node = shared_node();
    let long = "word ".repeat(3000);
    let response = client()
        .post(format!("{}/v1/chat/completions", node.url))
        .json(&greedy_request(&long, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("context holds 1024"), "{message}");
}

#[tokio::test]
async fn the_token_budget_header_bounds_prompt_and_answer() {
    let node = shared_node();
    let chat = |budget: &str| {
        let mut body = greedy_request(QUESTION, 500);
        body["ignore_eos"] = json!(true);
        client().post(format!("{}/v1/chat/completions", node.url)).header("chrysalis-max-tokens", budget).json(&body)
    };
    let answer: Value = chat("60").send().await.unwrap().json().await.unwrap();
    let usage = &answer["usage"];
    let total = usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap();
    assert_eq!(total, 60, "the answer stops exactly at the budget: {usage}");
    assert_eq!(answer["choices"][0]["finish_reason"], "length");

    let refused = chat("5").send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert!(body["error"]["message"].as_str().unwrap().contains("budget is 5 tokens"), "{body}");

    for bad in ["0", "-3", "many"] {
        assert_eq!(chat(bad).send().await.unwrap().status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn malformed_and_invalid_bodies_get_openai_errors() {
    let node = shared_node();
    let post = |body: Vec<u8>| {
        client()
            .post(format!("{}/v1/chat/completions", node.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let response = post(b"{not json".to_vec()).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("not a valid chat request"));

    let response = post(br#"{"messages":[{"role":"robot","content":"hi"}]}"#.to_vec()).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("unknown variant `robot`"));

    let response = post(br#"{"messages":[{"role":"user","content":"hi"}],"top_p":7}"#.to_vec()).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "top_p");

    let mut huge = br#"{"messages":[{"role":"user","content":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', 2 << 20));
    huge.extend(br#""}]}"#);
    let response = post(huge).await.unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("limit"));
}

#[tokio::test]
async fn models_health_and_metrics_describe_the_node() {
    let node = shared_node();
    let models: Value = client().get(format!("{}/v1/models", node.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "test-model");
    let health: Value = client().get(format!("{}/health", node.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["slots"], 4);

    complete(node, &greedy_request("Hi", 4)).await;
    let text = metrics_text(node).await;
    for name in [
        "chrysalis_node_requests_total",
        "chrysalis_node_completion_tokens_total",
        "chrysalis_node_queue_depth",
        "chrysalis_node_time_to_first_token_seconds_bucket",
        "chrysalis_node_tokens_per_second_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(metric(&text, "chrysalis_node_completion_tokens_total") >= 4.0);
}

/// One slot and a one-place queue, to watch slots and the queue directly.
fn single_slot_node() -> &'static TestNode {
    static NODE: std::sync::OnceLock<TestNode> = std::sync::OnceLock::new();
    NODE.get_or_init(|| start_node(1, 4096, 1))
}

/// A streamed answer that would run for a long time.
async fn open_long_stream(node: &TestNode) -> reqwest::Response {
    let mut request = greedy_request("Count from one to a thousand.", 4000);
    request["ignore_eos"] = json!(true);
    request["stream"] = json!(true);
    let response = client().post(format!("{}/v1/chat/completions", node.url)).json(&request).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response
}

#[tokio::test]
async fn a_disconnected_client_frees_its_slot() {
    let node = single_slot_node();
    let before = metric(&metrics_text(node).await, "chrysalis_node_requests_total{outcome=\"cancelled\"}");

    let long = open_long_stream(node).await;
    let mut chunks = long.bytes_stream();
    chunks.next().await.unwrap().unwrap(); // the answer has started
    drop(chunks);

    let started = Instant::now();
    let answer = complete(node, &greedy_request("Say hello.", 8)).await;
    assert!(!content(&answer).is_empty());
    // 4000 tokens would take far longer than this on any machine.
    assert!(started.elapsed() < Duration::from_secs(15), "waited {:?}", started.elapsed());
    let after = metric(&metrics_text(node).await, "chrysalis_node_requests_total{outcome=\"cancelled\"}");
    assert_eq!(after, before + 1.0);
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let node = single_slot_node();
    let running = open_long_stream(node).await;
    let mut running = running.bytes_stream();
    running.next().await.unwrap().unwrap(); // in the slot
    let waiting = open_long_stream(node).await; // in the queue

    let response = client()
        .post(format!("{}/v1/chat/completions", node.url))
        .json(&greedy_request("Hello?", 4))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "queue_full");

    drop(running);
    drop(waiting);
}

#[tokio::test]
async fn the_official_openai_python_client_works_unchanged() {
    let node = shared_node();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let base_url = format!("{}/v1", node.url);
    let output = tokio::process::Command::new("python3").arg(script).arg(&base_url).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "openai client failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("openai client ok"), "{stdout}");
}

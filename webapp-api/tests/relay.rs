//! The platform end to end: Telegram sign-in, the sealed relay to a real
//! node on the real model, charges by receipt, failures, failover, privacy,
//! and the ledger under 50 concurrent chats, on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use chrysalis_client::PlatformClient;
use common::proxy::{Fault, Proxy};
use common::*;
use futures_util::future::join_all;
use serde_json::{json, Value};

#[tokio::test]
async fn init_data_signed_by_the_bot_is_accepted_and_tampering_is_refused() {
    let platform = Platform::start(Database::Sqlite).await;
    let me = |auth: String| {
        let url = format!("{}/api/me", platform.url);
        async move { http().get(url).header("authorization", auth).send().await.unwrap() }
    };
    let good = me(platform.user_auth(501)).await;
    assert_eq!(good.status(), 200);
    let body: Value = good.json().await.unwrap();
    assert_eq!(body["user"]["id"], 501);
    assert_eq!(body["user"]["username"], "user501");
    assert_eq!(body["balance"]["available"], "0");

    let changed = platform.user_auth(501).replace("user501", "user502");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let user = r#"{"id":501,"first_name":"A"}"#;
    let wrong_bot = chrysalis_api::auth::sign_init_data(&[("auth_date", &now.to_string()), ("user", user)], "1:other");
    let expired = chrysalis_api::auth::sign_init_data(
        &[("auth_date", &(now - 2 * 86_400).to_string()), ("user", user)],
        BOT_TOKEN,
    );
    for (case, auth) in [
        ("changed field", changed),
        ("wrong bot token", format!("tma {wrong_bot}")),
        ("expired", format!("tma {expired}")),
    ] {
        let refused = me(auth).await;
        assert_eq!(refused.status(), 401, "{case}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{case}");
    }
    assert_eq!(me("Bearer nope".into()).await.status(), 401);
    assert_eq!(http().get(format!("{}/api/me", platform.url)).send().await.unwrap().status(), 401);
}

async fn full_chat_is_charged_exactly_the_receipts_price(database: Database) {
    let platform = Platform::start(database).await;
    let provider = platform.register(shared_node()).await;
    let auth = platform.funded_user(600, 10_000_000).await;
    let providers = platform.verified_providers(&auth).await;
    assert_eq!(providers.len(), 1);
    let (listing, node) = &providers[0];
    assert_eq!((listing.id, listing.model.as_str()), (provider, "test-model"));

    let mut streamed = String::new();
    let chat = greedy_chat("What is the capital of France? Answer in one sentence.", 24);
    let answer =
        platform.client(&auth).chat(&[(provider, node)], Some(256), chat, |t| streamed.push_str(t)).await.unwrap();
    let outcome = answer.outcome;
    assert_eq!(answer.provider_id, provider);
    assert!(!outcome.text.is_empty());
    assert_eq!(streamed, outcome.text);
    assert!(outcome.text_chunks >= 3, "the answer streamed in chunks");
    let receipt = &outcome.receipt;
    assert!(outcome.trailer_receipt.is_some(), "the relay passes the receipt trailer on");

    let tokens = i64::from(receipt.prompt_tokens + receipt.completion_tokens);
    let price = tokens * PRICE_PER_TOKEN;
    let commission = price * COMMISSION_BPS / 10_000;
    assert_eq!(platform.balance(&auth).await, (10_000_000 - price, 0), "charged exactly the receipt's price");
    let chat = platform.last_chat().await;
    assert_eq!(chat["state"], "settled");
    assert_eq!(chat["price"], price);
    assert_eq!(chat["commission"], commission);
    assert_eq!(chat["hold_amount"], 256 * PRICE_PER_TOKEN);
    let admin = platform.admin_get("/api/admin/providers").await;
    assert_eq!(admin["providers"][0]["balance"], (price - commission).to_string(), "provider credited");
    let overview = platform.admin_get("/api/admin/overview?days=7").await;
    assert_eq!(overview["totals"]["revenue"], commission.to_string(), "commission landed");
    assert_eq!(overview["totals"]["fees_balance"], commission.to_string());
    assert_eq!(overview["totals"]["chats"], 1);

    let history = platform.user_get("/api/history", &auth).await;
    let kinds: Vec<&str> = history["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["capture", "hold", "credit"], "newest first");
    platform.assert_invariants().await;
}

#[tokio::test]
async fn full_chat_is_charged_exactly_the_receipts_price_on_sqlite() {
    full_chat_is_charged_exactly_the_receipts_price(Database::Sqlite).await;
}

#[tokio::test]
async fn full_chat_is_charged_exactly_the_receipts_price_on_postgres() {
    full_chat_is_charged_exactly_the_receipts_price(Database::Postgres).await;
}

/// 50 chats at once from a user whose balance covers 10 of them.
async fn concurrent_chats_never_overdraw(database: Database) {
    const BUDGET: u32 = 64;
    let hold = i64::from(BUDGET) * PRICE_PER_TOKEN;
    let platform = Platform::start(database).await;
    let provider = platform.register(shared_node()).await;
    let auth = platform.funded_user(700, 10 * hold).await;
    let providers = platform.verified_providers(&auth).await;
    let node = &providers[0].1;
    let client = platform.client(&auth);
    let candidates = [(provider, node)];

    // Each chat runs to its budget, so each costs exactly its hold.
    let chats = (0..50).map(|i| {
        let chat = budget_filling_chat(&format!("Count to {i}."));
        client.chat(&candidates, Some(BUDGET), chat, |_| {})
    });
    let results = join_all(chats).await;
    let served = results.iter().filter(|r| r.is_ok()).count() as i64;
    for error in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(error.to_string().contains("402"), "refused only for funds: {error}");
    }
    assert_eq!(served, 10, "exactly the chats the balance covers are served");
    assert_eq!(platform.balance(&auth).await, (10 * hold - served * hold, 0));
    let admin = platform.admin_get("/api/admin/providers").await;
    assert_eq!(admin["providers"][0]["balance"], (served * (hold - hold * COMMISSION_BPS / 10_000)).to_string());
    platform.assert_invariants().await;
}

#[tokio::test]
async fn concurrent_chats_never_overdraw_on_sqlite() {
    concurrent_chats_never_overdraw(Database::Sqlite).await;
}

#[tokio::test]
async fn concurrent_chats_never_overdraw_on_postgres() {
    concurrent_chats_never_overdraw(Database::Postgres).await;
}

#[tokio::test]
async fn a_forged_receipt_is_refused_and_nothing_is_charged() {
    let platform = Platform::start(Database::Sqlite).await;
    let proxy = Proxy::start(shared_node(), Fault::ForgeReceipt).await;
    let provider = platform.register(&proxy.url).await;
    let auth = platform.funded_user(800, 1_000_000).await;
    let providers = platform.verified_providers(&auth).await;
    let chat = greedy_chat("Name a colour.", 8);
    // The client checks the sealed receipt inside the answer, which the proxy cannot touch.
    let answer = platform.client(&auth).chat(&[(provider, &providers[0].1)], Some(128), chat, |_| {}).await.unwrap();
    assert!(!answer.outcome.text.is_empty());

    assert_eq!(platform.balance(&auth).await, (1_000_000, 0), "not charged");
    let chat = platform.last_chat().await;
    assert_eq!((chat["state"].as_str(), chat["outcome"].as_str()), (Some("released"), Some("bad_receipt")));
    let listed = platform.verified_providers(&auth).await;
    assert!(listed[0].0.score < 1.0, "the provider's score dropped: {}", listed[0].0.score);
    platform.assert_invariants().await;
}

#[tokio::test]
async fn a_node_dying_mid_stream_costs_the_user_nothing() {
    let platform = Platform::start(Database::Sqlite).await;
    let proxy = Proxy::start(shared_node(), Fault::CutAfterFrames(3)).await;
    let provider = platform.register(&proxy.url).await;
    let auth = platform.funded_user(801, 1_000_000).await;
    let providers = platform.verified_providers(&auth).await;
    let mut streamed = String::new();
    let chat = greedy_chat("Tell me a long story about a lighthouse.", 200);
    let result =
        platform.client(&auth).chat(&[(provider, &providers[0].1)], Some(512), chat, |t| streamed.push_str(t)).await;
    assert!(result.is_err(), "the answer broke off");
    assert!(!streamed.is_empty(), "some text had arrived before the node died");

    assert_eq!(platform.balance(&auth).await, (1_000_000, 0), "the whole hold came back");
    let chat = platform.last_chat().await;
    assert_eq!((chat["state"].as_str(), chat["outcome"].as_str()), (Some("released"), Some("provider_failed")));
    platform.assert_invariants().await;
}

#[tokio::test]
async fn a_hung_node_is_given_up_on_before_the_stale_hold_sweep() {
    // Holds go stale after 4 s, so a chat may stream for 3 s.
    let platform = Platform::start_with(Database::Sqlite, &["--stale-hold-secs=4"]).await;
    let proxy = Proxy::start(shared_node(), Fault::StallAfterFrames(3)).await;
    let provider = platform.register(&proxy.url).await;
    let auth = platform.funded_user(802, 1_000_000).await;
    let providers = platform.verified_providers(&auth).await;
    let chat = greedy_chat("Tell me a long story about a lighthouse.", 200);
    let started = std::time::Instant::now();
    let result = platform.client(&auth).chat(&[(provider, &providers[0].1)], Some(512), chat, |_| {}).await;
    let waited = started.elapsed();
    assert!(result.is_err(), "the answer never finished");
    assert!(waited >= Duration::from_secs(3) && waited < Duration::from_secs(4), "gave up after {waited:?}");

    assert_eq!(platform.balance(&auth).await, (1_000_000, 0), "the whole hold came back");
    let chat = platform.last_chat().await;
    assert_eq!((chat["state"].as_str(), chat["outcome"].as_str()), (Some("released"), Some("timed_out")));
    platform.assert_invariants().await;
}

#[tokio::test]
async fn failover_reaches_the_live_provider_when_the_other_is_down() {
    let platform = Platform::start_with(Database::Sqlite, &["--health-interval-secs=1"]).await;
    let mut dead = Proxy::start(shared_node(), Fault::None).await;
    let down = platform.register(&dead.url).await;
    let live = platform.register(shared_node()).await;
    dead.stop().await;
    let auth = platform.funded_user(802, 10_000_000).await;
    let nodes = platform.verified_providers(&auth).await;
    let node_of = |id: i64| &nodes.iter().find(|(p, _)| p.id == id).unwrap().1;

    for i in 0..3 {
        let chat = greedy_chat(&format!("Say the number {i}."), 8);
        let answer = platform
            .client(&auth)
            .chat(&[(down, node_of(down)), (live, node_of(live))], Some(128), chat, |_| {})
            .await
            .unwrap();
        assert_eq!(answer.provider_id, live);
    }
    let chat = platform.last_chat().await;
    assert_eq!(chat["state"], "settled");
    let (available, held) = platform.balance(&auth).await;
    assert!(available < 10_000_000 && held == 0, "charged once per chat");

    // The health checks notice, and the dead provider drops out of the list.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let admin = platform.admin_get("/api/admin/providers").await;
    let entry = admin["providers"].as_array().unwrap().iter().find(|p| p["provider"]["id"] == down).unwrap().clone();
    assert_eq!(entry["provider"]["healthy"], false, "{entry}");
    assert_eq!(entry["provider"]["score"], 0.0);
    let listed = platform.verified_providers(&auth).await;
    assert_eq!(listed[0].0.id, live, "best-scored first");
    platform.assert_invariants().await;
}

async fn the_database_and_logs_never_hold_the_conversation(database: Database) {
    let logs = captured_logs();
    let mut platform = Platform::start(database).await;
    let provider = platform.register(shared_node()).await;
    let auth = platform.funded_user(803, 10_000_000).await;
    let providers = platform.verified_providers(&auth).await;
    let prompt = "Quillibrix the zebra plays the oboe in Vantorra. Describe Quillibrix.";
    let answer = platform
        .client(&auth)
        .chat(&[(provider, &providers[0].1)], Some(256), greedy_chat(prompt, 40), |_| {})
        .await
        .unwrap();
    let text = answer.outcome.text.clone();
    assert!(text.len() > 20, "{text}");
    platform.stop().await;

    let stored = platform.stored_bytes();
    assert!(contains(&stored, b"chat_requests") || contains(&stored, b"CREATE TABLE"), "the database was read");
    assert!(contains(&stored, answer.outcome.receipt.request_id.to_hex().as_bytes()), "the chat's row was read");
    let logged = logs.lock().unwrap().clone();
    assert!(String::from_utf8_lossy(&logged).contains("chat charged"), "the relay's logs were captured");
    for (place, bytes) in [("database", &stored), ("logs", &logged)] {
        for secret in [prompt, "Quillibrix", "Vantorra", text.as_str()] {
            assert!(!contains(bytes, secret.as_bytes()), "{place} holds {secret:?}");
        }
    }
}

#[tokio::test]
async fn the_database_and_logs_never_hold_the_conversation_on_sqlite() {
    the_database_and_logs_never_hold_the_conversation(Database::Sqlite).await;
}

#[tokio::test]
async fn the_database_and_logs_never_hold_the_conversation_on_postgres() {
    the_database_and_logs_never_hold_the_conversation(Database::Postgres).await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn admins_steer_users_and_providers() {
    let platform = Platform::start(Database::Sqlite).await;
    let provider = platform.register(shared_node()).await;
    let auth = platform.funded_user(804, 5_000_000).await;

    // Non-admins are kept out; an admin's initData gets in.
    let as_user =
        http().get(format!("{}/api/admin/overview", platform.url)).header("authorization", &auth).send().await.unwrap();
    assert_eq!(as_user.status(), 403);
    let as_admin_user = http()
        .get(format!("{}/api/admin/overview", platform.url))
        .header("authorization", platform.user_auth(900))
        .send()
        .await
        .unwrap();
    assert_eq!(as_admin_user.status(), 200);

    let bad_query = http()
        .get(format!("{}/api/history?limit=x", platform.url))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_query.status(), 400);
    assert_eq!(bad_query.json::<Value>().await.unwrap()["error"]["code"], "invalid_request");

    let found = platform.admin_get("/api/admin/users?query=user804").await;
    assert_eq!(found["users"][0]["user"]["id"], 804);
    assert_eq!(found["users"][0]["balance"], "5000000");
    let bad_credit = http()
        .post(format!("{}/api/admin/users/804/credit", platform.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"amount": "100", "reason": " "}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_credit.status(), 400, "a credit needs a reason");

    // A disabled provider takes no chats and leaves the list.
    platform.admin_post(&format!("/api/admin/providers/{provider}/enabled"), json!({"enabled": false})).await;
    assert!(platform.client(&auth).providers().await.unwrap().is_empty());
    platform.admin_post(&format!("/api/admin/providers/{provider}/enabled"), json!({"enabled": true})).await;

    // A banned user is refused everywhere.
    platform.admin_post("/api/admin/users/804/banned", json!({"banned": true})).await;
    let banned =
        http().get(format!("{}/api/balance", platform.url)).header("authorization", &auth).send().await.unwrap();
    assert_eq!(banned.status(), 403);
    platform.admin_post("/api/admin/users/804/banned", json!({"banned": false})).await;

    let topup: Value = http()
        .post(format!("{}/api/topup", platform.url))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(topup["memo"].as_str().unwrap().starts_with("cz-"));
    assert_eq!(topup["address"], "EQD_test_deposit_address");
    for _ in 0..4 {
        let again =
            http().post(format!("{}/api/topup", platform.url)).header("authorization", &auth).send().await.unwrap();
        assert_eq!(again.status(), 200);
    }
    let limited =
        http().post(format!("{}/api/topup", platform.url)).header("authorization", &auth).send().await.unwrap();
    assert_eq!(limited.status(), 429, "five top-ups a minute");

    // The bot acts for a user with the service token.
    let as_bot = http()
        .get(format!("{}/api/balance", platform.url))
        .bearer_auth(SERVICE_TOKEN)
        .header("x-chrysalis-user", "804")
        .send()
        .await
        .unwrap();
    assert_eq!(as_bot.json::<Value>().await.unwrap()["available"], "5000000");

    for path in ["/health", "/api/openapi.json"] {
        assert_eq!(http().get(format!("{}{path}", platform.url)).send().await.unwrap().status(), 200, "{path}");
    }
    let metrics = http().get(format!("{}/metrics", platform.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("chrysalis_api_provider_healthy"), "{metrics}");

    let overview = platform.admin_get("/api/admin/overview?days=3").await;
    assert_eq!(overview["series"].as_array().unwrap().len(), 3);
    assert_eq!(overview["totals"]["users"], 1, "admins signing in are not made users");
    platform.assert_invariants().await;
}

#[tokio::test]
async fn chats_are_limited_per_user_and_in_size() {
    let platform = Platform::start_with(Database::Sqlite, &["--chats-per-minute=2", "--max-body-bytes=65536"]).await;
    let provider = platform.register(shared_node()).await;
    let auth = platform.funded_user(805, 10_000_000).await;
    let post = |body: Value| {
        http().post(format!("{}/api/chat", platform.url)).header("authorization", &auth).json(&body).send()
    };
    let big = json!({"candidates": [{"provider_id": provider, "sealed": "A".repeat(70_000)}]});
    assert_eq!(post(big).await.unwrap().status(), 413);
    let bad = post(json!({"candidates": []})).await.unwrap();
    assert_eq!(bad.status(), 400);
    let limited = post(json!({"candidates": [{"provider_id": provider, "sealed": "AAAA"}]})).await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(platform.balance(&auth).await, (10_000_000, 0));
}

#[tokio::test]
async fn a_node_started_with_register_joins_the_platform() {
    let platform = Platform::start(Database::Sqlite).await;
    let node = start_node(1, 256, &[format!("--register={}", platform.url), "--prompt-price=0.5".into()]);
    let auth = platform.funded_user(806, 0).await;
    let mut listed = Vec::new();
    for _ in 0..100 {
        listed = platform.client(&auth).providers().await.unwrap();
        if !listed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed.len(), 1, "registered");
    assert_eq!(listed[0].prices.prompt_per_million.0, 500_000_000);
    let admin = platform.admin_get("/api/admin/providers").await;
    assert_eq!(admin["providers"][0]["provider"]["url"], node);

    // A registration whose document the URL does not serve is refused.
    let mut forged = registration(&node).await;
    forged.url = shared_node().to_owned();
    let refused = http().post(format!("{}/api/providers/register", platform.url)).json(&forged).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("serves another attestation document"));
}

#[tokio::test]
async fn unattested_nodes_are_refused_unless_allowed() {
    let platform = Platform::start_with(Database::Sqlite, &["--allow-unattested=false"]).await;
    let refused = http()
        .post(format!("{}/api/providers/register", platform.url))
        .json(&registration(shared_node()).await)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("outside any TEE"));
}

#[tokio::test]
async fn an_oversized_attestation_document_is_refused() {
    let platform = Platform::start(Database::Sqlite).await;
    // A "node" that streams an endless document.
    let endless = axum::Router::new().route(
        "/v1/attestation",
        axum::routing::get(|| async {
            let chunks = futures_util::stream::repeat_with(|| {
                Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; 8192]))
            });
            axum::body::Body::from_stream(chunks)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, endless).await });
    let prices = json!({"prompt_per_million": "1", "completion_per_million": "1"});
    let refused = http()
        .post(format!("{}/api/admin/providers", platform.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"url": url, "model": "m", "prices": prices}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("larger than"));
}

#[tokio::test]
async fn shutdown_lets_a_streaming_chat_finish_and_settle() {
    let mut platform = Platform::start(Database::Sqlite).await;
    let provider = platform.register(shared_node()).await;
    let auth = platform.funded_user(807, 10_000_000).await;
    let node = platform.verified_providers(&auth).await.remove(0).1;
    let client = platform.client(&auth);
    let chat = tokio::spawn(async move {
        let chat = greedy_chat("Write a long poem about rivers.", 150);
        client.chat(&[(provider, &node)], Some(512), chat, |_| {}).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    platform.stop().await;
    let answer = chat.await.unwrap().expect("the chat in flight finished");
    assert!(answer.outcome.receipt.completion_tokens > 20);
    assert_eq!(platform.last_chat().await["state"], "settled");
}

#[tokio::test]
async fn a_client_leaving_mid_answer_still_pays_for_what_was_produced() {
    use base64::Engine as _;
    use chrysalis_client::SealedChat;
    use chrysalis_protocol::sealed::{RelayCandidate, RelayRequest};

    let platform = Platform::start(Database::Sqlite).await;
    let provider = platform.register(shared_node()).await;
    let auth = platform.funded_user(808, 10_000_000).await;
    let node = platform.verified_providers(&auth).await.remove(0).1;
    let sealed = SealedChat::seal(&node, greedy_chat("Write a long story about a fox.", 120)).unwrap();
    let request = RelayRequest {
        max_tokens: Some(512),
        candidates: vec![RelayCandidate {
            provider_id: provider,
            sealed: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sealed.body),
        }],
    };
    let mut response = http()
        .post(format!("{}/api/chat", platform.url))
        .header("authorization", &auth)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.chunk().await.unwrap().expect("the first bytes arrive");
    drop(response);

    let mut chat = Value::Null;
    for _ in 0..200 {
        chat = platform.last_chat().await;
        if chat["state"] != "held" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((chat["state"].as_str(), chat["outcome"].as_str()), (Some("settled"), Some("answered")), "{chat}");
    assert!(chat["completion_tokens"].as_i64().unwrap() > 100, "the node answered in full: {chat}");
    let (available, held) = platform.balance(&auth).await;
    assert_eq!((available, held), (10_000_000 - chat["price"].as_i64().unwrap(), 0));
    platform.assert_invariants().await;
}

#[tokio::test]
async fn an_admin_added_node_that_restarts_with_new_keys_is_followed() {
    let platform = Platform::start_with(Database::Sqlite, &["--health-interval-secs=1"]).await;
    let proxy = Proxy::start(shared_node(), Fault::None).await;
    let prices = json!({"prompt_per_million": PRICE_PER_MILLION.to_string(), "completion_per_million": "2000000000"});
    let added = platform
        .admin_post("/api/admin/providers", json!({"url": proxy.url, "model": "test-model", "prices": prices}))
        .await;
    let provider = added["id"].as_i64().unwrap();
    let auth = platform.funded_user(809, 10_000_000).await;
    let before = platform.verified_providers(&auth).await.remove(0).0.attestation;

    // The same URL now answers with another node's keys.
    let restarted = start_node(1, 256, &[]);
    proxy.retarget(&restarted);
    let mut after = before.clone();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = platform.verified_providers(&auth).await.remove(0).0.attestation;
        if after != before {
            break;
        }
    }
    assert_ne!(after.ohttp_key_config, before.ohttp_key_config, "the health check picked up the new document");
    let node = platform.verified_providers(&auth).await.remove(0).1;
    let answer =
        platform.client(&auth).chat(&[(provider, &node)], Some(128), greedy_chat("Say yes.", 4), |_| {}).await.unwrap();
    assert_eq!(platform.last_chat().await["state"], "settled");
    let receipt = answer.outcome.receipt;
    let price = i64::from(receipt.prompt_tokens) * PRICE_PER_TOKEN + i64::from(receipt.completion_tokens) * 2000;
    assert_eq!(platform.balance(&auth).await, (10_000_000 - price, 0));
}

#[tokio::test]
async fn a_client_leaving_before_the_first_byte_is_not_charged() {
    let platform = Platform::start(Database::Sqlite).await;
    let proxy = Proxy::start(shared_node(), Fault::Delay(Duration::from_millis(800))).await;
    let provider = platform.register(&proxy.url).await;
    let auth = platform.funded_user(810, 1_000_000).await;
    let node = platform.verified_providers(&auth).await.remove(0).1;
    let impatient = PlatformClient::new(&platform.url, &auth);
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        impatient.chat(&[(provider, &node)], Some(128), greedy_chat("Say hello.", 8), |_| {}),
    )
    .await;
    assert!(gave_up.is_err(), "the client gave up waiting");

    let mut chat = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        chat = platform.last_chat().await;
        if chat["state"] != "held" {
            break;
        }
    }
    assert_eq!((chat["state"].as_str(), chat["outcome"].as_str()), (Some("released"), Some("cancelled")), "{chat}");
    assert_eq!(platform.balance(&auth).await, (1_000_000, 0));
    platform.assert_invariants().await;
}

#[tokio::test]
async fn registration_takes_the_provider_token_when_one_is_set() {
    let platform = Platform::start_with(Database::Sqlite, &["--provider-token=provider-secret"]).await;
    let registration = registration(shared_node()).await;
    let register = |token: Option<&'static str>| {
        let mut request = http().post(format!("{}/api/providers/register", platform.url)).json(&registration);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(register(None).await.unwrap().status(), 401);
    assert_eq!(register(Some("wrong")).await.unwrap().status(), 401);
    assert_eq!(register(Some("provider-secret")).await.unwrap().status(), 200);

    let auth = platform.funded_user(811, 0).await;
    let same_model = platform.user_get("/api/providers?model=test-model", &auth).await;
    assert_eq!(same_model["providers"].as_array().unwrap().len(), 1);
    let other_model = platform.user_get("/api/providers?model=another-model", &auth).await;
    assert!(other_model["providers"].as_array().unwrap().is_empty());
}

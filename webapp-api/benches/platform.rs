//! What the platform costs: sealed chats through the relay against the same
//! chats sent straight to the node (the peer, measured in the same run,
//! alternating), and ledger settlements per second on SQLite and
//! PostgreSQL. Run with `scripts/bench-platform`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use chrysalis_api::ledger::{self, Capture, HoldRequest};
use chrysalis_client::NodeClient;
use chrysalis_protocol::attestation::{Policy, VerifiedNode};
use common::{greedy_chat, shared_node, Database, Platform};
use futures_util::future::join_all;

const ROUNDS: usize = 15;
const TOKENS: u32 = 32;

/// Time to the first text and to the end of one chat.
struct Timing {
    first_text: Duration,
    total: Duration,
}

async fn direct(node: &VerifiedNode, question: String) -> Timing {
    let started = Instant::now();
    let mut first = None;
    NodeClient::new(shared_node())
        .chat(node, greedy_chat(&question, TOKENS), |_| {
            first.get_or_insert_with(|| started.elapsed());
        })
        .await
        .unwrap();
    Timing { first_text: first.unwrap(), total: started.elapsed() }
}

async fn relayed(platform: &Platform, auth: &str, provider: i64, node: &VerifiedNode, question: String) -> Timing {
    let started = Instant::now();
    let mut first = None;
    platform
        .client(auth)
        .chat(&[(provider, node)], Some(512), greedy_chat(&question, TOKENS), |_| {
            first.get_or_insert_with(|| started.elapsed());
        })
        .await
        .unwrap();
    Timing { first_text: first.unwrap(), total: started.elapsed() }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn relay_overhead() {
    let platform = Platform::start(Database::Sqlite).await;
    let provider = platform.register(shared_node()).await;
    let auth = platform.funded_user(1, 1_000_000_000_000).await;
    let node =
        NodeClient::new(shared_node()).attest(&Policy { allow_unattested: true, ..Policy::default() }).await.unwrap();

    // Warm both paths (connections, the node's caches) before measuring.
    direct(&node, "warm up".into()).await;
    relayed(&platform, &auth, provider, &node, "warm up".into()).await;
    let (mut direct_runs, mut relayed_runs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // A new question each round, so neither path reuses the other's cache.
        direct_runs.push(direct(&node, format!("Describe the number {round}.")).await);
        relayed_runs
            .push(relayed(&platform, &auth, provider, &node, format!("Describe the number {}.", round + 100)).await);
    }
    let first = |runs: &[Timing]| median(runs.iter().map(|t| t.first_text).collect());
    let total = |runs: &[Timing]| median(runs.iter().map(|t| t.total).collect());
    println!("sealed chat, {TOKENS} greedy tokens, {ROUNDS} rounds alternating, medians:");
    println!(
        "  first text: direct {:.1} ms, through the platform {:.1} ms (+{:.1} ms)",
        ms(first(&direct_runs)),
        ms(first(&relayed_runs)),
        ms(first(&relayed_runs)) - ms(first(&direct_runs))
    );
    println!(
        "  whole chat: direct {:.1} ms, through the platform {:.1} ms ({:.2}x)",
        ms(total(&direct_runs)),
        ms(total(&relayed_runs)),
        total(&relayed_runs).as_secs_f64() / total(&direct_runs).as_secs_f64()
    );

    let concurrent = 8;
    let started = Instant::now();
    join_all((0..concurrent).map(|i| direct(&node, format!("Name the colour {i}.")))).await;
    let direct_wall = started.elapsed();
    let started = Instant::now();
    join_all(
        (0..concurrent).map(|i| relayed(&platform, &auth, provider, &node, format!("Name the colour {}.", i + 50))),
    )
    .await;
    let relayed_wall = started.elapsed();
    println!(
        "  {concurrent} chats at once: direct {:.0} ms, through the platform {:.0} ms ({:.2}x)",
        ms(direct_wall),
        ms(relayed_wall),
        relayed_wall.as_secs_f64() / direct_wall.as_secs_f64()
    );
    platform.assert_invariants().await;
}

/// Hold-then-capture cycles per second, `concurrency` at a time.
async fn settlements(database: Database) {
    const CYCLES: usize = 2000;
    let concurrency = 16;
    let platform = Platform::start(database).await;
    let db = &platform.state.db;
    platform.funded_user(1, 1_000_000_000_000).await;
    sqlx::query("INSERT INTO providers (id, url, model, model_sha256, attestation, tee, prompt_price, completion_price, registered_at, updated_at) VALUES (1, 'http://bench', 'm', '', '{}', 'none', 0, 0, 0, 0)")
        .execute(db.pool())
        .await
        .unwrap();
    let started = Instant::now();
    for batch in (0..CYCLES).collect::<Vec<_>>().chunks(concurrency) {
        join_all(batch.iter().map(|&i| async move {
            let id = format!("{i:032x}");
            ledger::hold(db, &HoldRequest { request_id: &id, user_id: 1, token_budget: 100, amount: 1000 })
                .await
                .unwrap();
            let capture = Capture {
                provider_id: 1,
                prompt_tokens: 10,
                completion_tokens: 10,
                price: 700,
                commission: 70,
                attempts: 1,
                ttft_ms: Some(5),
                duration_ms: 50,
            };
            ledger::capture(db, &id, &capture).await.unwrap();
        }))
        .await;
    }
    let elapsed = started.elapsed();
    println!(
        "  {database:?}: {CYCLES} chats held and captured, {concurrency} at a time, in {:.2} s: {:.0} chats/s",
        elapsed.as_secs_f64(),
        CYCLES as f64 / elapsed.as_secs_f64()
    );
    platform.assert_invariants().await;
}

#[tokio::main]
async fn main() {
    relay_overhead().await;
    println!("ledger settlements (hold, then capture with 3 movements), each its own transaction:");
    settlements(Database::Sqlite).await;
    settlements(Database::Postgres).await;
}

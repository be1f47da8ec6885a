//! The ledger alone, hammered concurrently, on SQLite and PostgreSQL.

mod common;

use chrysalis_api::ledger::{self, Account, Capture, HoldRequest, LedgerError, Release};
use chrysalis_api::users::{self, TelegramUser};
use common::{Database, Platform};
use futures_util::future::join_all;

async fn user(platform: &Platform, id: i64, funds: i64) {
    users::upsert(&platform.state.db, &TelegramUser { id, ..TelegramUser::default() }).await.unwrap();
    ledger::credit_user(&platform.state.db, Account::ADJUSTMENTS, id, funds, "credit", "test", "funds").await.unwrap();
}

fn capture(price: i64) -> Capture {
    Capture {
        provider_id: 1,
        prompt_tokens: 1,
        completion_tokens: 1,
        price,
        commission: price / 10,
        attempts: 1,
        ttft_ms: None,
        duration_ms: 1,
    }
}

/// 200 holds at once against a balance for 37; then captures and releases
/// race each other for every hold, each settling exactly once.
async fn holds_settle_once_and_never_overdraw(database: Database) {
    let platform = Platform::start(database).await;
    let db = &platform.state.db;
    user(&platform, 1, 37 * 1000).await;
    sqlx::query("INSERT INTO providers (id, url, model, model_sha256, attestation, tee, prompt_price, completion_price, registered_at, updated_at) VALUES (1, 'http://p', 'm', '', '{}', 'none', 0, 0, 0, 0)")
        .execute(db.pool())
        .await
        .unwrap();
    let ids: Vec<String> = (0..200).map(|i| format!("{i:032x}")).collect();
    let holds = ids.iter().map(|id| async move {
        ledger::hold(db, &HoldRequest { request_id: id, user_id: 1, token_budget: 10, amount: 1000 }).await
    });
    let results = join_all(holds).await;
    let held: Vec<&String> = ids.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|(id, _)| id).collect();
    for result in &results {
        assert!(matches!(result, Ok(()) | Err(LedgerError::InsufficientFunds { .. })), "{result:?}");
    }
    assert_eq!(held.len(), 37);
    assert_eq!(ledger::balance(db, Account::user(1)).await.unwrap(), 0);
    assert_eq!(ledger::balance(db, Account::hold(1)).await.unwrap(), 37_000);

    let settles = held.iter().flat_map(|id| {
        let capture = capture(600);
        let release = Release { outcome: "test", provider_id: None, attempts: 1 };
        [
            Box::pin(async move { ledger::capture(db, id, &capture).await })
                as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>,
            Box::pin(async move { ledger::release(db, id, &release).await }),
        ]
    });
    let outcomes = join_all(settles).await;
    let mut captured = 0;
    for pair in outcomes.chunks(2) {
        let done = pair.iter().filter(|r| r.is_ok()).count();
        assert_eq!(done, 1, "exactly one of capture and release wins: {pair:?}");
        assert!(pair.iter().any(|r| matches!(r, Err(LedgerError::NotHeld(_)))));
        captured += i64::from(pair[0].is_ok());
    }
    let user_balance = ledger::balance(db, Account::user(1)).await.unwrap();
    assert_eq!(user_balance, 37_000 - captured * 600);
    assert_eq!(ledger::balance(db, Account::hold(1)).await.unwrap(), 0);
    assert_eq!(ledger::balance(db, Account::provider(1)).await.unwrap(), captured * 540);
    assert_eq!(ledger::balance(db, Account::FEES).await.unwrap(), captured * 60);
    let report = ledger::check_invariants(db).await.unwrap();
    assert!(report.ok, "{report:?}");
}

#[tokio::test]
async fn holds_settle_once_and_never_overdraw_on_sqlite() {
    holds_settle_once_and_never_overdraw(Database::Sqlite).await;
}

#[tokio::test]
async fn holds_settle_once_and_never_overdraw_on_postgres() {
    holds_settle_once_and_never_overdraw(Database::Postgres).await;
}

async fn stale_holds_return_to_their_users(database: Database) {
    let platform = Platform::start(database).await;
    let db = &platform.state.db;
    user(&platform, 2, 5000).await;
    let id = format!("{:032x}", 99);
    ledger::hold(db, &HoldRequest { request_id: &id, user_id: 2, token_budget: 10, amount: 3000 }).await.unwrap();
    assert_eq!(ledger::release_stale_holds(db, 60_000).await.unwrap(), 0, "a fresh hold stays");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(ledger::release_stale_holds(db, 10).await.unwrap(), 1);
    assert_eq!(ledger::balance(db, Account::user(2)).await.unwrap(), 5000);
    assert!(matches!(ledger::capture(db, &id, &capture(100)).await, Err(LedgerError::NotHeld(_))));
    // Negative amounts and overdrafts never post.
    assert!(matches!(
        ledger::credit_user(db, Account::ADJUSTMENTS, 2, -5, "credit", "t", "").await,
        Err(LedgerError::InvalidAmount)
    ));
    let report = ledger::check_invariants(db).await.unwrap();
    assert!(report.ok && report.postings_sum == 0, "{report:?}");
}

#[tokio::test]
async fn stale_holds_return_to_their_users_on_sqlite() {
    stale_holds_return_to_their_users(Database::Sqlite).await;
}

#[tokio::test]
async fn stale_holds_return_to_their_users_on_postgres() {
    stale_holds_return_to_their_users(Database::Postgres).await;
}

#[tokio::test]
async fn the_invariant_check_notices_a_tampered_balance() {
    let platform = Platform::start(Database::Sqlite).await;
    let db = &platform.state.db;
    user(&platform, 3, 1000).await;
    assert!(ledger::check_invariants(db).await.unwrap().ok);
    sqlx::query("UPDATE accounts SET balance = balance + 1 WHERE kind = 'user'").execute(db.pool()).await.unwrap();
    let report = ledger::check_invariants(db).await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.mismatched_accounts.len(), 1);
}

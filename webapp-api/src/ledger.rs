//! The double-entry ledger in nanoTON.
//!
//! Every movement of money is a pair of postings that sum to zero, written
//! in the same database transaction as the cached balances they change.
//! Balances of users, holds, providers and fees never go below zero: a
//! debit is a conditional `UPDATE ... WHERE balance >= amount`, so
//! concurrent requests cannot overdraw (the row lock on PostgreSQL, the
//! write lock on SQLite). Within a transaction accounts are updated in id
//! order, so concurrent transactions on PostgreSQL never deadlock.
//!
//! A chat first *holds* its maximum price (user → the user's hold account),
//! then is either *captured* (hold → provider and fees, the unused rest back
//! to the user) or *released* (hold → user), exactly once.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::{Any, Row, Transaction};

use crate::db::Db;
use crate::unix_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AccountKind {
    /// A user's spendable balance.
    User,
    /// Money held for a user's chats in flight.
    Hold,
    /// A provider's earnings.
    Provider,
    /// The platform's commission.
    Fees,
    /// Money that came in from outside (TON, Stars); goes negative.
    Deposits,
    /// Credits an admin granted by hand; goes negative.
    Adjustments,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::User => "user",
            AccountKind::Hold => "hold",
            AccountKind::Provider => "provider",
            AccountKind::Fees => "fees",
            AccountKind::Deposits => "deposits",
            AccountKind::Adjustments => "adjustments",
        }
    }

    fn may_go_negative(self) -> bool {
        matches!(self, AccountKind::Deposits | AccountKind::Adjustments)
    }
}

/// An account: its kind and owner (user id, provider id, or 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Account(pub AccountKind, pub i64);

impl Account {
    pub fn user(user_id: i64) -> Self {
        Account(AccountKind::User, user_id)
    }
    pub fn hold(user_id: i64) -> Self {
        Account(AccountKind::Hold, user_id)
    }
    pub fn provider(provider_id: i64) -> Self {
        Account(AccountKind::Provider, provider_id)
    }
    pub const FEES: Account = Account(AccountKind::Fees, 0);
    pub const DEPOSITS: Account = Account(AccountKind::Deposits, 0);
    pub const ADJUSTMENTS: Account = Account(AccountKind::Adjustments, 0);
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the balance does not cover {needed} nanoTON")]
    InsufficientFunds { needed: i64 },
    #[error("amounts must be positive and below 2^63 nanoTON")]
    InvalidAmount,
    #[error("chat request {0} holds no money (unknown or already settled)")]
    NotHeld(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// One movement: `amount` nanoTON from one account to another.
#[derive(Debug, Clone, Copy)]
pub struct Movement {
    pub from: Account,
    pub to: Account,
    pub amount: i64,
}

/// Writes a ledger transaction of `movements` inside `tx`: the postings,
/// then the balances in account order, refusing any debit that would take
/// a non-negative account below zero. Zero movements are skipped.
pub async fn post(
    tx: &mut Transaction<'static, Any>,
    kind: &str,
    reference: &str,
    note: &str,
    movements: &[Movement],
) -> Result<i64, LedgerError> {
    if movements.iter().any(|m| m.amount < 0) {
        return Err(LedgerError::InvalidAmount);
    }
    let now = unix_ms();
    let transaction_id: i64 = sqlx::query(
        "INSERT INTO ledger_transactions (kind, reference, note, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(kind)
    .bind(reference)
    .bind(note)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?;

    let mut deltas: BTreeMap<Account, i64> = BTreeMap::new();
    let mut ids: BTreeMap<Account, i64> = BTreeMap::new();
    for movement in movements.iter().filter(|m| m.amount > 0) {
        *deltas.entry(movement.from).or_default() -= movement.amount;
        *deltas.entry(movement.to).or_default() += movement.amount;
        for account in [movement.from, movement.to] {
            if let Entry::Vacant(slot) = ids.entry(account) {
                slot.insert(account_id(tx, account).await?);
            }
        }
        for (account, amount) in [(movement.from, -movement.amount), (movement.to, movement.amount)] {
            sqlx::query(
                "INSERT INTO postings (transaction_id, account_id, amount, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(transaction_id)
            .bind(ids[&account])
            .bind(amount)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
    }
    let mut ordered: Vec<(i64, Account, i64)> = deltas.into_iter().map(|(a, d)| (ids[&a], a, d)).collect();
    ordered.sort_unstable();
    for (id, account, delta) in ordered {
        let updated = if delta < 0 && !account.0.may_go_negative() {
            sqlx::query("UPDATE accounts SET balance = balance + $1 WHERE id = $2 AND balance >= $3")
                .bind(delta)
                .bind(id)
                .bind(-delta)
                .execute(&mut **tx)
                .await?
        } else {
            sqlx::query("UPDATE accounts SET balance = balance + $1 WHERE id = $2")
                .bind(delta)
                .bind(id)
                .execute(&mut **tx)
                .await?
        };
        if updated.rows_affected() != 1 {
            return Err(LedgerError::InsufficientFunds { needed: -delta });
        }
    }
    Ok(transaction_id)
}

/// The id of `account`, created at zero on first use.
async fn account_id(tx: &mut Transaction<'static, Any>, account: Account) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO accounts (kind, owner_id, balance) VALUES ($1, $2, 0) ON CONFLICT (kind, owner_id) DO NOTHING",
    )
    .bind(account.0.as_str())
    .bind(account.1)
    .execute(&mut **tx)
    .await?;
    sqlx::query("SELECT id FROM accounts WHERE kind = $1 AND owner_id = $2")
        .bind(account.0.as_str())
        .bind(account.1)
        .fetch_one(&mut **tx)
        .await?
        .try_get("id")
}

/// The balance of `account` (zero if it never moved).
pub async fn balance(db: &Db, account: Account) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("SELECT balance FROM accounts WHERE kind = $1 AND owner_id = $2")
        .bind(account.0.as_str())
        .bind(account.1)
        .fetch_optional(db.pool())
        .await?;
    row.map_or(Ok(0), |row| row.try_get("balance"))
}

/// Moves money from outside into a user's balance (an admin credit from
/// `Account::ADJUSTMENTS`, a deposit from `Account::DEPOSITS`).
pub async fn credit_user(
    db: &Db,
    source: Account,
    user_id: i64,
    amount: i64,
    kind: &str,
    reference: &str,
    note: &str,
) -> Result<i64, LedgerError> {
    if amount <= 0 {
        return Err(LedgerError::InvalidAmount);
    }
    let mut tx = db.begin().await?;
    let id =
        post(&mut tx, kind, reference, note, &[Movement { from: source, to: Account::user(user_id), amount }]).await?;
    tx.commit().await?;
    Ok(id)
}

/// A chat about to be relayed: who pays, how much at most.
#[derive(Debug, Clone)]
pub struct HoldRequest<'a> {
    pub request_id: &'a str,
    pub user_id: i64,
    pub token_budget: i64,
    pub amount: i64,
}

/// Records the chat request and holds its maximum price, in one transaction.
pub async fn hold(db: &Db, request: &HoldRequest<'_>) -> Result<(), LedgerError> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO chat_requests (request_id, user_id, token_budget, hold_amount, state, created_at) \
         VALUES ($1, $2, $3, $4, 'held', $5)",
    )
    .bind(request.request_id)
    .bind(request.user_id)
    .bind(request.token_budget)
    .bind(request.amount)
    .bind(unix_ms())
    .execute(&mut *tx)
    .await?;
    let movement =
        Movement { from: Account::user(request.user_id), to: Account::hold(request.user_id), amount: request.amount };
    post(&mut tx, "hold", request.request_id, "", &[movement]).await?;
    tx.commit().await?;
    Ok(())
}

/// What a verified receipt proves a chat cost.
#[derive(Debug, Clone)]
pub struct Capture {
    pub provider_id: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// What the user pays (at most the hold).
    pub price: i64,
    /// The platform's part of `price`; the provider gets the rest.
    pub commission: i64,
    pub attempts: i64,
    pub ttft_ms: Option<i64>,
    pub duration_ms: i64,
}

/// Charges a held chat: the price moves to the provider and the fees
/// account, the rest of the hold back to the user; one transaction.
pub async fn capture(db: &Db, request_id: &str, capture: &Capture) -> Result<(), LedgerError> {
    if capture.price < 0 || capture.commission < 0 || capture.commission > capture.price {
        return Err(LedgerError::InvalidAmount);
    }
    let mut tx = db.begin().await?;
    let (user_id, held) = claim(&mut tx, request_id, "settled", "answered").await?;
    if capture.price > held {
        return Err(LedgerError::InsufficientFunds { needed: capture.price });
    }
    sqlx::query(
        "UPDATE chat_requests SET provider_id = $1, prompt_tokens = $2, completion_tokens = $3, price = $4, \
         commission = $5, attempts = $6, ttft_ms = $7, duration_ms = $8 WHERE request_id = $9",
    )
    .bind(capture.provider_id)
    .bind(capture.prompt_tokens)
    .bind(capture.completion_tokens)
    .bind(capture.price)
    .bind(capture.commission)
    .bind(capture.attempts)
    .bind(capture.ttft_ms)
    .bind(capture.duration_ms)
    .bind(request_id)
    .execute(&mut *tx)
    .await?;
    let hold = Account::hold(user_id);
    let movements = [
        Movement { from: hold, to: Account::provider(capture.provider_id), amount: capture.price - capture.commission },
        Movement { from: hold, to: Account::FEES, amount: capture.commission },
        Movement { from: hold, to: Account::user(user_id), amount: held - capture.price },
    ];
    post(&mut tx, "capture", request_id, "", &movements).await?;
    tx.commit().await?;
    Ok(())
}

/// Why a held chat was released without a charge.
#[derive(Debug, Clone)]
pub struct Release {
    /// unreachable | cancelled | no_receipt | bad_receipt | provider_failed | timed_out | expired
    pub outcome: &'static str,
    pub provider_id: Option<i64>,
    pub attempts: i64,
}

/// Returns a held chat's whole hold to the user; one transaction.
pub async fn release(db: &Db, request_id: &str, release: &Release) -> Result<(), LedgerError> {
    let mut tx = db.begin().await?;
    let (user_id, held) = claim(&mut tx, request_id, "released", release.outcome).await?;
    sqlx::query("UPDATE chat_requests SET provider_id = $1, attempts = $2 WHERE request_id = $3")
        .bind(release.provider_id)
        .bind(release.attempts)
        .bind(request_id)
        .execute(&mut *tx)
        .await?;
    let movement = Movement { from: Account::hold(user_id), to: Account::user(user_id), amount: held };
    post(&mut tx, "release", request_id, release.outcome, &[movement]).await?;
    tx.commit().await?;
    Ok(())
}

/// Moves a chat out of `held`, exactly once; returns its user and hold.
async fn claim(
    tx: &mut Transaction<'static, Any>,
    request_id: &str,
    state: &str,
    outcome: &str,
) -> Result<(i64, i64), LedgerError> {
    let row = sqlx::query(
        "UPDATE chat_requests SET state = $1, outcome = $2, settled_at = $3 WHERE request_id = $4 AND state = 'held' \
         RETURNING user_id, hold_amount",
    )
    .bind(state)
    .bind(outcome)
    .bind(unix_ms())
    .bind(request_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| LedgerError::NotHeld(request_id.to_owned()))?;
    Ok((row.try_get("user_id")?, row.try_get("hold_amount")?))
}

/// Releases holds older than `max_age_ms`: chats whose relay ended without
/// settling (the process stopped mid-stream). Returns how many.
pub async fn release_stale_holds(db: &Db, max_age_ms: i64) -> Result<usize, LedgerError> {
    let rows = sqlx::query("SELECT request_id FROM chat_requests WHERE state = 'held' AND created_at < $1")
        .bind(unix_ms() - max_age_ms)
        .fetch_all(db.pool())
        .await?;
    let mut released = 0;
    for row in rows {
        let request_id: String = row.try_get("request_id")?;
        match release(db, &request_id, &Release { outcome: "expired", provider_id: None, attempts: 0 }).await {
            Ok(()) => released += 1,
            // Settled meanwhile by the relay that owned it.
            Err(LedgerError::NotHeld(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(released)
}

/// One posting on a user's account.
#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    pub id: i64,
    /// hold | capture | release | credit | deposit
    pub kind: String,
    /// Signed nanoTON, as a decimal string.
    pub amount: String,
    pub reference: String,
    pub note: String,
    pub created_at: i64,
}

/// A user's postings, newest first, before posting id `before`.
pub async fn history(db: &Db, user_id: i64, before: Option<i64>, limit: i64) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT p.id, t.kind, p.amount, t.reference, t.note, p.created_at FROM postings p \
         JOIN accounts a ON a.id = p.account_id JOIN ledger_transactions t ON t.id = p.transaction_id \
         WHERE a.kind = 'user' AND a.owner_id = $1 AND p.id < $2 ORDER BY p.id DESC LIMIT $3",
    )
    .bind(user_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(HistoryEntry {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                amount: row.try_get::<i64, _>("amount")?.to_string(),
                reference: row.try_get("reference")?,
                note: row.try_get("note")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect()
}

/// The ledger's invariants, checked against the database.
#[derive(Debug, Serialize)]
pub struct InvariantReport {
    pub ok: bool,
    /// Sum of every posting (must be 0).
    pub postings_sum: i64,
    /// Transactions whose postings do not sum to zero.
    pub unbalanced_transactions: Vec<i64>,
    /// Accounts whose cached balance differs from their postings.
    pub mismatched_accounts: Vec<i64>,
    /// Accounts below zero that must not be.
    pub negative_accounts: Vec<i64>,
    /// Users whose hold account differs from their chats in flight.
    pub mismatched_holds: Vec<i64>,
    pub accounts: i64,
    pub postings: i64,
}

pub async fn check_invariants(db: &Db) -> Result<InvariantReport, sqlx::Error> {
    let pool = db.pool();
    let ids = |rows: Vec<sqlx::any::AnyRow>| rows.iter().map(|r| r.try_get::<i64, _>(0)).collect::<Result<Vec<_>, _>>();
    let totals =
        sqlx::query("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT), COUNT(*) FROM postings").fetch_one(pool).await?;
    let postings_sum: i64 = totals.try_get(0)?;
    let postings: i64 = totals.try_get(1)?;
    let unbalanced_transactions = ids(sqlx::query(
        "SELECT transaction_id FROM postings GROUP BY transaction_id HAVING SUM(amount) <> 0 ORDER BY transaction_id LIMIT 100",
    )
    .fetch_all(pool)
    .await?)?;
    let mismatched_accounts = ids(sqlx::query(
        "SELECT a.id FROM accounts a LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM postings GROUP BY account_id) p \
         ON p.account_id = a.id WHERE a.balance <> COALESCE(p.total, 0) ORDER BY a.id LIMIT 100",
    )
    .fetch_all(pool)
    .await?)?;
    let negative_accounts = ids(sqlx::query(
        "SELECT id FROM accounts WHERE balance < 0 AND kind NOT IN ('deposits', 'adjustments') ORDER BY id LIMIT 100",
    )
    .fetch_all(pool)
    .await?)?;
    let mismatched_holds = ids(sqlx::query(
        "SELECT a.owner_id FROM accounts a LEFT JOIN (SELECT user_id, SUM(hold_amount) AS total FROM chat_requests \
         WHERE state = 'held' GROUP BY user_id) h ON h.user_id = a.owner_id \
         WHERE a.kind = 'hold' AND a.balance <> COALESCE(h.total, 0) ORDER BY a.owner_id LIMIT 100",
    )
    .fetch_all(pool)
    .await?)?;
    let accounts: i64 = sqlx::query("SELECT COUNT(*) FROM accounts").fetch_one(pool).await?.try_get(0)?;
    let ok = postings_sum == 0
        && unbalanced_transactions.is_empty()
        && mismatched_accounts.is_empty()
        && negative_accounts.is_empty()
        && mismatched_holds.is_empty();
    Ok(InvariantReport {
        ok,
        postings_sum,
        unbalanced_transactions,
        mismatched_accounts,
        negative_accounts,
        mismatched_holds,
        accounts,
        postings,
    })
}

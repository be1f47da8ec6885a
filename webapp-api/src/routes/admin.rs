//! The admin API: overview figures, providers, users, ledger invariants.
//! Every change is logged with the admin who made it.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use chrysalis_protocol::money::NanoTon;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::ledger::{self, Account};
use crate::providers;
use crate::routes::page_limit;
use crate::routes::registry::{register_checked, NewProvider};
use crate::users;
use crate::{unix_ms, AppState};

const DAY_MS: i64 = 86_400_000;

#[derive(Deserialize)]
pub struct OverviewQuery {
    days: Option<i64>,
}

/// Totals and a per-day series: new and active users, chats, tokens, what
/// users paid, the platform's commission and the providers' earnings.
pub async fn overview(
    State(state): State<AppState>,
    _admin: Admin,
    query: Result<Query<OverviewQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let days = query.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::invalid("days must be 1 to 366"));
    }
    let pool = state.db.pool();
    let now = unix_ms();
    let since = (now / DAY_MS - days + 1) * DAY_MS;
    let totals = sqlx::query(
        "SELECT COUNT(*) AS chats, CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
         CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
         CAST(COALESCE(SUM(price), 0) AS BIGINT) AS charged, CAST(COALESCE(SUM(commission), 0) AS BIGINT) AS commission \
         FROM chat_requests WHERE state = 'settled'",
    )
    .fetch_one(pool)
    .await?;
    let users: i64 = sqlx::query("SELECT COUNT(*) FROM users").fetch_one(pool).await?.try_get(0)?;
    let active_day: i64 = sqlx::query("SELECT COUNT(DISTINCT user_id) FROM chat_requests WHERE created_at >= $1")
        .bind(now - DAY_MS)
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    let failed: i64 =
        sqlx::query("SELECT COUNT(*) FROM chat_requests WHERE state = 'released'").fetch_one(pool).await?.try_get(0)?;
    let charged: i64 = totals.try_get("charged")?;
    let commission: i64 = totals.try_get("commission")?;

    let chat_days = sqlx::query(
        "SELECT created_at / 86400000 AS day, COUNT(*) AS chats, COUNT(DISTINCT user_id) AS active_users, \
         CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
         CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
         CAST(COALESCE(SUM(price), 0) AS BIGINT) AS charged, CAST(COALESCE(SUM(commission), 0) AS BIGINT) AS commission \
         FROM chat_requests WHERE state = 'settled' AND created_at >= $1 GROUP BY created_at / 86400000 ORDER BY day",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    let new_users = sqlx::query(
        "SELECT created_at / 86400000 AS day, COUNT(*) AS users FROM users WHERE created_at >= $1 \
         GROUP BY created_at / 86400000",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    let mut series = Vec::with_capacity(days as usize);
    for day in (since / DAY_MS)..=(now / DAY_MS) {
        let chats = chat_days.iter().find(|r| r.try_get::<i64, _>("day").is_ok_and(|d| d == day));
        let get = |column: &str| chats.map_or(Ok(0), |r| r.try_get::<i64, _>(column));
        let joined = new_users.iter().find(|r| r.try_get::<i64, _>("day").is_ok_and(|d| d == day));
        let charged = get("charged")?;
        let commission = get("commission")?;
        series.push(json!({
            "day_start": day * DAY_MS,
            "new_users": joined.map_or(Ok(0), |r| r.try_get::<i64, _>("users"))?,
            "active_users": get("active_users")?,
            "chats": get("chats")?,
            "prompt_tokens": get("prompt_tokens")?,
            "completion_tokens": get("completion_tokens")?,
            "charged": charged.to_string(),
            "revenue": commission.to_string(),
            "provider_earnings": (charged - commission).to_string(),
        }));
    }
    Ok(Json(json!({
        "totals": {
            "users": users,
            "active_users_24h": active_day,
            "chats": totals.try_get::<i64, _>("chats")?,
            "released_chats": failed,
            "prompt_tokens": totals.try_get::<i64, _>("prompt_tokens")?,
            "completion_tokens": totals.try_get::<i64, _>("completion_tokens")?,
            "charged": charged.to_string(),
            "revenue": commission.to_string(),
            "provider_earnings": (charged - commission).to_string(),
            "fees_balance": ledger::balance(&state.db, Account::FEES).await?.to_string(),
        },
        "series": series,
    })))
}

/// Every provider with health, moving averages, the last day's success
/// rate and time-to-first-token percentiles, and its earnings.
pub async fn providers(State(state): State<AppState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let since = unix_ms() - DAY_MS;
    let mut out = Vec::new();
    for provider in providers::list(&state.db).await? {
        let rows = sqlx::query(
            "SELECT state, ttft_ms FROM chat_requests WHERE provider_id = $1 AND created_at >= $2 ORDER BY ttft_ms",
        )
        .bind(provider.id)
        .bind(since)
        .fetch_all(state.db.pool())
        .await?;
        let mut ttfts = Vec::new();
        let mut settled = 0usize;
        for row in &rows {
            if row.try_get::<String, _>("state")? == "settled" {
                settled += 1;
                if let Some(ttft) = row.try_get::<Option<i64>, _>("ttft_ms")? {
                    ttfts.push(ttft);
                }
            }
        }
        let percentile = |p: f64| -> Option<i64> {
            (!ttfts.is_empty()).then(|| ttfts[((ttfts.len() - 1) as f64 * p).round() as usize])
        };
        let earnings = ledger::balance(&state.db, Account::provider(provider.id)).await?;
        out.push(json!({
            "provider": provider,
            "last_24h": {
                "chats": rows.len(),
                "success_rate": if rows.is_empty() { None } else { Some(settled as f64 / rows.len() as f64) },
                "ttft_ms_p50": percentile(0.5),
                "ttft_ms_p90": percentile(0.9),
                "ttft_ms_p99": percentile(0.99),
            },
            "balance": earnings.to_string(),
        }));
    }
    Ok(Json(json!({ "providers": out })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnabledBody {
    enabled: bool,
}

pub async fn set_provider_enabled(
    State(state): State<AppState>,
    admin: Admin,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<EnabledBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let Json(body) = body?;
    if !providers::set_enabled(&state.db, id, body.enabled).await? {
        return Err(ApiError::not_found(format!("no provider {id}")));
    }
    tracing::info!(admin = %admin.who, provider = id, enabled = body.enabled, "provider switched");
    Ok(Json(json!({ "id": id, "enabled": body.enabled })))
}

/// Adds a provider by URL: the platform fetches its attestation document.
pub async fn add_provider(
    State(state): State<AppState>,
    admin: Admin,
    body: Result<Json<NewProvider>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let document = providers::fetch_attestation(&state.http, &body.url)
        .await
        .map_err(|e| ApiError::invalid(format!("the node at {}: {e}", body.url)))?;
    let id = register_checked(&state, body.with_document(document)).await?;
    tracing::info!(admin = %admin.who, provider = id, "provider added by an admin");
    Ok(Json(json!({ "id": id })))
}

#[derive(Deserialize)]
pub struct UserQuery {
    query: Option<String>,
    limit: Option<i64>,
}

pub async fn users(
    State(state): State<AppState>,
    _admin: Admin,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let limit = page_limit(query.limit)?;
    let text = query.query.unwrap_or_default();
    if text.len() > 100 {
        return Err(ApiError::invalid("query is at most 100 characters"));
    }
    let mut out = Vec::new();
    for user in users::search(&state.db, text.trim(), limit).await? {
        let balance = ledger::balance(&state.db, Account::user(user.id)).await?;
        out.push(json!({ "user": user, "balance": balance.to_string() }));
    }
    Ok(Json(json!({ "users": out })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanBody {
    banned: bool,
}

pub async fn ban(
    State(state): State<AppState>,
    admin: Admin,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<BanBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let Json(body) = body?;
    if !users::set_banned(&state.db, id, body.banned).await? {
        return Err(ApiError::not_found(format!("no user {id}")));
    }
    tracing::info!(admin = %admin.who, user = id, banned = body.banned, "user ban changed");
    Ok(Json(json!({ "id": id, "banned": body.banned })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditBody {
    /// nanoTON, a decimal string.
    amount: NanoTon,
    reason: String,
}

/// Credits a user by hand, from the adjustments account, with a reason.
pub async fn credit(
    State(state): State<AppState>,
    admin: Admin,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<CreditBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let Json(body) = body?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(ApiError::invalid("a credit needs a reason of 1 to 200 characters"));
    }
    let amount = i64::try_from(body.amount.0).map_err(|_| ApiError::invalid("amount too large"))?;
    if users::get(&state.db, id).await?.is_none() {
        return Err(ApiError::not_found(format!("no user {id}")));
    }
    let note = format!("{reason} (by {})", admin.who);
    let transaction = ledger::credit_user(
        &state.db,
        Account::ADJUSTMENTS,
        id,
        amount,
        "credit",
        &format!("admin:{}", admin.who),
        &note,
    )
    .await?;
    tracing::info!(admin = %admin.who, user = id, amount, transaction, "manual credit");
    let balance = ledger::balance(&state.db, Account::user(id)).await?;
    Ok(Json(json!({ "transaction": transaction, "balance": balance.to_string() })))
}

pub async fn ledger_check(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<ledger::InvariantReport>, ApiError> {
    Ok(Json(ledger::check_invariants(&state.db).await?))
}

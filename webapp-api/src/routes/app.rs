//! The mini-app's endpoints (also used by the bot through the service
//! token): profile, balance, ledger history, providers, top-up intents.
//! The chat relay lives in `relay`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrysalis_protocol::money::Prices;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::ledger::{self, Account};
use crate::providers;
use crate::routes::page_limit;
use crate::{random_bytes, unix_ms, AppState};

#[derive(Serialize)]
pub struct Balance {
    /// Spendable nanoTON, as a decimal string.
    pub available: String,
    /// nanoTON held for chats in flight.
    pub held: String,
}

async fn balance_of(state: &AppState, user_id: i64) -> Result<Balance, ApiError> {
    Ok(Balance {
        available: ledger::balance(&state.db, Account::user(user_id)).await?.to_string(),
        held: ledger::balance(&state.db, Account::hold(user_id)).await?.to_string(),
    })
}

pub async fn me(State(state): State<AppState>, Caller(user): Caller) -> Result<Json<Value>, ApiError> {
    let balance = balance_of(&state, user.id).await?;
    let is_admin = state.settings.admin_ids.contains(&user.id);
    Ok(Json(json!({ "user": user, "is_admin": is_admin, "balance": balance })))
}

pub async fn balance(State(state): State<AppState>, Caller(user): Caller) -> Result<Json<Balance>, ApiError> {
    Ok(Json(balance_of(&state, user.id).await?))
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

pub async fn history(
    State(state): State<AppState>,
    Caller(user): Caller,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let limit = page_limit(query.limit)?;
    let entries = ledger::history(&state.db, user.id, query.before, limit).await?;
    let next_before = (entries.len() as i64 == limit).then(|| entries.last().map(|e| e.id)).flatten();
    Ok(Json(json!({ "entries": entries, "next_before": next_before })))
}

/// A provider as users see it: enough to check its attestation and choose.
#[derive(Serialize)]
pub struct ProviderView {
    pub id: i64,
    pub model: String,
    pub prices: Prices,
    pub attestation: chrysalis_protocol::attestation::AttestationDocument,
    pub tee: String,
    pub healthy: bool,
    pub score: f64,
    pub success_rate: f64,
    pub ttft_ms: f64,
    pub tokens_per_second: f64,
}

#[derive(Deserialize)]
pub struct ProvidersQuery {
    model: Option<String>,
}

/// Enabled providers that pass the platform's policy, best-scored first.
pub async fn providers(
    State(state): State<AppState>,
    _caller: Caller,
    query: Result<Query<ProvidersQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let listed: Vec<ProviderView> = providers::list(&state.db)
        .await?
        .into_iter()
        .filter(|p| p.enabled && p.verified(&state.settings.policy).is_ok())
        .filter(|p| query.model.as_ref().is_none_or(|model| &p.model == model))
        .map(|p| ProviderView {
            id: p.id,
            model: p.model,
            prices: p.prices,
            attestation: p.attestation,
            tee: p.tee,
            healthy: p.healthy,
            score: p.score,
            success_rate: p.success_rate,
            ttft_ms: p.ttft_ms,
            tokens_per_second: p.tokens_per_second,
        })
        .collect();
    Ok(Json(json!({ "providers": listed })))
}

/// Starts a top-up: a memo that ties a TON transfer to this user.
pub async fn topup(State(state): State<AppState>, Caller(user): Caller) -> Result<Json<Value>, ApiError> {
    state.topup_limiter.admit(user.id)?;
    let address = state
        .settings
        .deposit_address
        .clone()
        .ok_or_else(|| ApiError::unavailable("TON top-ups are not enabled on this platform"))?;
    let memo = format!("cz-{}", hex::encode(random_bytes::<6>()));
    sqlx::query("INSERT INTO topup_intents (user_id, memo, created_at) VALUES ($1, $2, $3)")
        .bind(user.id)
        .bind(&memo)
        .bind(unix_ms())
        .execute(state.db.pool())
        .await?;
    let link = format!("ton://transfer/{address}?text={memo}");
    Ok(Json(json!({ "address": address, "memo": memo, "link": link })))
}

//! The provider registry: registered nodes, their attestation documents,
//! prices, health and the running figures that score them.
//!
//! Score, in [0, 1]: `success_rate × 1000 / (1000 + ttft_ms)`, zero for a
//! disabled or unhealthy node. `success_rate`, `ttft_ms` and
//! `tokens_per_second` are moving averages (each new chat weighs 20%).

use std::time::Duration;

use chrysalis_client::{ClientError, NodeClient};
use chrysalis_protocol::attestation::{AttestationDocument, Policy, VerifiedNode};
use chrysalis_protocol::money::{NanoTon, Prices};
use chrysalis_protocol::registry::ProviderRegistration;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::{flag, Db};
use crate::ledger::LedgerError;
use crate::unix_ms;

/// Weight of the newest observation in the moving averages.
const EWMA_WEIGHT: f64 = 0.2;
/// How long a health check or registration fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize)]
pub struct Provider {
    pub id: i64,
    pub url: String,
    pub model: String,
    pub model_sha256: String,
    pub attestation: AttestationDocument,
    /// The TEE kind the document claims (`none` in development).
    pub tee: String,
    pub prices: Prices,
    pub payout_address: String,
    pub enabled: bool,
    pub healthy: bool,
    pub health_error: String,
    pub checked_at: i64,
    pub success_rate: f64,
    pub ttft_ms: f64,
    pub tokens_per_second: f64,
    pub registered_at: i64,
    pub score: f64,
}

impl Provider {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let attestation: String = row.try_get("attestation")?;
        let attestation = serde_json::from_str(&attestation).map_err(|e| sqlx::Error::Decode(e.into()))?;
        let price = |column: &str| -> Result<NanoTon, sqlx::Error> {
            let value: i64 = row.try_get(column)?;
            u64::try_from(value).map(NanoTon).map_err(|e| sqlx::Error::Decode(e.into()))
        };
        let mut provider = Provider {
            id: row.try_get("id")?,
            url: row.try_get("url")?,
            model: row.try_get("model")?,
            model_sha256: row.try_get("model_sha256")?,
            attestation,
            tee: row.try_get("tee")?,
            prices: Prices {
                prompt_per_million: price("prompt_price")?,
                completion_per_million: price("completion_price")?,
            },
            payout_address: row.try_get("payout_address")?,
            enabled: flag(row, "enabled")?,
            healthy: flag(row, "healthy")?,
            health_error: row.try_get("health_error")?,
            checked_at: row.try_get("checked_at")?,
            success_rate: row.try_get("success_rate")?,
            ttft_ms: row.try_get("ttft_ms")?,
            tokens_per_second: row.try_get("tokens_per_second")?,
            registered_at: row.try_get("registered_at")?,
            score: 0.0,
        };
        provider.score = provider.compute_score();
        Ok(provider)
    }

    fn compute_score(&self) -> f64 {
        if !self.enabled || !self.healthy {
            return 0.0;
        }
        self.success_rate * 1000.0 / (1000.0 + self.ttft_ms.max(0.0))
    }

    /// The keys to relay with, re-checked against the platform's policy.
    pub fn verified(&self, policy: &Policy) -> Result<VerifiedNode, String> {
        self.attestation.verify(policy).map_err(|e| e.to_string())
    }

    /// The most a chat with this token budget can cost here: every token
    /// billed at the dearer of the two prices.
    pub fn max_price(&self, token_budget: u32) -> Option<NanoTon> {
        let budget = u64::from(token_budget);
        let prompt_heavy = self.prices.cost(budget, 0)?;
        let completion_heavy = self.prices.cost(0, budget)?;
        Some(prompt_heavy.max(completion_heavy))
    }
}

macro_rules! provider_columns {
    () => {
        "id, url, model, model_sha256, attestation, tee, prompt_price, completion_price, payout_address, enabled, \
         healthy, health_error, checked_at, success_rate, ttft_ms, tokens_per_second, registered_at"
    };
}

fn tee_name(document: &AttestationDocument) -> String {
    serde_json::to_value(&document.tee).ok().and_then(|v| v["kind"].as_str().map(str::to_owned)).unwrap_or_default()
}

/// Adds a node or updates it (by URL), marking it healthy; returns its id.
pub async fn upsert(db: &Db, registration: &ProviderRegistration) -> Result<i64, LedgerError> {
    let now = unix_ms();
    let to_i64 = |n: NanoTon| i64::try_from(n.0).map_err(|_| LedgerError::InvalidAmount);
    let attestation = serde_json::to_string(&registration.attestation).map_err(|e| sqlx::Error::Encode(e.into()))?;
    let row = sqlx::query(
        "INSERT INTO providers (url, model, model_sha256, attestation, tee, prompt_price, completion_price, \
         payout_address, healthy, checked_at, registered_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9, $9) \
         ON CONFLICT (url) DO UPDATE SET model = excluded.model, model_sha256 = excluded.model_sha256, \
         attestation = excluded.attestation, tee = excluded.tee, prompt_price = excluded.prompt_price, \
         completion_price = excluded.completion_price, payout_address = excluded.payout_address, healthy = 1, \
         health_error = '', checked_at = excluded.checked_at, updated_at = excluded.updated_at RETURNING id",
    )
    .bind(&registration.url)
    .bind(&registration.model)
    .bind(&registration.attestation.model_sha256)
    .bind(attestation)
    .bind(tee_name(&registration.attestation))
    .bind(to_i64(registration.prices.prompt_per_million)?)
    .bind(to_i64(registration.prices.completion_per_million)?)
    .bind(registration.payout_address.as_deref().unwrap_or_default())
    .bind(now)
    .fetch_one(db.pool())
    .await?;
    Ok(row.try_get("id")?)
}

/// Every provider, best-scored first.
pub async fn list(db: &Db) -> Result<Vec<Provider>, sqlx::Error> {
    let rows = sqlx::query(concat!("SELECT ", provider_columns!(), " FROM providers ORDER BY id"))
        .fetch_all(db.pool())
        .await?;
    let mut providers = rows.iter().map(Provider::from_row).collect::<Result<Vec<_>, _>>()?;
    providers.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    Ok(providers)
}

pub async fn get(db: &Db, id: i64) -> Result<Option<Provider>, sqlx::Error> {
    let row = sqlx::query(concat!("SELECT ", provider_columns!(), " FROM providers WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(Provider::from_row).transpose()
}

/// Enables or disables a provider; `false` if there is no such provider.
pub async fn set_enabled(db: &Db, id: i64, enabled: bool) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE providers SET enabled = $1, updated_at = $2 WHERE id = $3")
        .bind(i64::from(enabled))
        .bind(unix_ms())
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// How one relayed chat went for its provider.
#[derive(Debug, Clone, Copy)]
pub enum ChatResult {
    Answered { ttft_ms: f64, tokens_per_second: f64 },
    Failed,
}

/// Folds one chat into the provider's moving averages.
pub async fn record_chat(db: &Db, id: i64, result: ChatResult) -> Result<(), sqlx::Error> {
    let query = match result {
        ChatResult::Answered { ttft_ms, tokens_per_second } => sqlx::query(
            "UPDATE providers SET success_rate = success_rate * $1 + $2, \
             ttft_ms = CASE WHEN ttft_ms = 0 THEN $3 ELSE ttft_ms * $1 + $3 * $2 END, \
             tokens_per_second = CASE WHEN tokens_per_second = 0 THEN $4 ELSE tokens_per_second * $1 + $4 * $2 END \
             WHERE id = $5",
        )
        .bind(1.0 - EWMA_WEIGHT)
        .bind(EWMA_WEIGHT)
        .bind(ttft_ms)
        .bind(tokens_per_second)
        .bind(id),
        ChatResult::Failed => sqlx::query("UPDATE providers SET success_rate = success_rate * $1 WHERE id = $2")
            .bind(1.0 - EWMA_WEIGHT)
            .bind(id),
    };
    query.execute(db.pool()).await?;
    Ok(())
}

/// Fetches the attestation document a node serves now.
pub async fn fetch_attestation(http: &reqwest::Client, url: &str) -> Result<AttestationDocument, String> {
    let node = NodeClient::with_http(http.clone(), url);
    match tokio::time::timeout(FETCH_TIMEOUT, node.document()).await {
        Ok(Ok(document)) => Ok(document),
        Ok(Err(ClientError::Http(error))) => Err(format!("unreachable: {}", without_url(&error))),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no attestation document within {} s", FETCH_TIMEOUT.as_secs())),
    }
}

/// A reqwest error's text without the URL (already in the log's fields).
pub fn without_url(error: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        text = e.to_string();
        source = e.source();
    }
    text
}

/// Checks one provider: it must answer with a document that passes the
/// policy. A new document (the node restarted with fresh keys) replaces
/// the stored one.
pub async fn check_health(
    db: &Db,
    http: &reqwest::Client,
    policy: &Policy,
    provider: &Provider,
) -> Result<bool, sqlx::Error> {
    let checked = fetch_attestation(http, &provider.url)
        .await
        .and_then(|document| document.verify(policy).map(|_| document).map_err(|e| e.to_string()));
    let now = unix_ms();
    match checked {
        Ok(document) => {
            if document != provider.attestation {
                tracing::info!(provider = provider.id, "provider presents a new attestation document");
                let text = serde_json::to_string(&document).map_err(|e| sqlx::Error::Encode(e.into()))?;
                sqlx::query(
                    "UPDATE providers SET attestation = $1, model_sha256 = $2, tee = $3, updated_at = $4 WHERE id = $5",
                )
                .bind(text)
                .bind(&document.model_sha256)
                .bind(tee_name(&document))
                .bind(now)
                .bind(provider.id)
                .execute(db.pool())
                .await?;
            }
            sqlx::query("UPDATE providers SET healthy = 1, health_error = '', checked_at = $1 WHERE id = $2")
                .bind(now)
                .bind(provider.id)
                .execute(db.pool())
                .await?;
            Ok(true)
        }
        Err(error) => {
            if provider.healthy {
                tracing::warn!(provider = provider.id, %error, "provider failed its health check");
            }
            sqlx::query("UPDATE providers SET healthy = 0, health_error = $1, checked_at = $2 WHERE id = $3")
                .bind(error)
                .bind(now)
                .bind(provider.id)
                .execute(db.pool())
                .await?;
            Ok(false)
        }
    }
}

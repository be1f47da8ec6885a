//! Provider registration: `POST /api/providers/register`, sent by a node
//! started with `--register`.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use chrysalis_protocol::attestation::AttestationDocument;
use chrysalis_protocol::money::Prices;
use chrysalis_protocol::registry::ProviderRegistration;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::ProviderAuth;
use crate::error::ApiError;
use crate::providers;
use crate::AppState;

const MAX_URL_CHARS: usize = 512;
const MAX_NAME_CHARS: usize = 128;

/// A provider an admin adds by URL; its document is fetched from the node.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProvider {
    pub url: String,
    pub model: String,
    pub prices: Prices,
    #[serde(default)]
    pub payout_address: Option<String>,
}

impl NewProvider {
    pub fn with_document(self, attestation: AttestationDocument) -> ProviderRegistration {
        ProviderRegistration {
            url: self.url,
            model: self.model,
            prices: self.prices,
            attestation,
            payout_address: self.payout_address,
        }
    }
}

pub async fn register(
    State(state): State<AppState>,
    _provider: ProviderAuth,
    body: Result<Json<ProviderRegistration>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(registration) = body?;
    let id = register_checked(&state, registration).await?;
    Ok(Json(json!({ "id": id })))
}

/// Checks a registration and stores it: sane fields, a document that passes
/// the policy, and a node at `url` that serves that same document (so no
/// one can register keys they do not hold, or someone else's URL).
pub async fn register_checked(state: &AppState, registration: ProviderRegistration) -> Result<i64, ApiError> {
    let url = registration.url.trim_end_matches('/');
    let parsed = reqwest::Url::parse(url).map_err(|_| ApiError::invalid("url must be an absolute http(s) URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || url.chars().count() > MAX_URL_CHARS {
        return Err(ApiError::invalid(format!("url must be http(s) and at most {MAX_URL_CHARS} characters")));
    }
    for (field, value) in
        [("model", Some(&registration.model)), ("payout_address", registration.payout_address.as_ref())]
    {
        if value.is_some_and(|v| v.trim().is_empty() || v.chars().count() > MAX_NAME_CHARS) {
            return Err(ApiError::invalid(format!("{field} must be 1 to {MAX_NAME_CHARS} characters")));
        }
    }
    registration
        .attestation
        .verify(&state.settings.policy)
        .map_err(|e| ApiError::invalid(format!("attestation refused: {e}")))?;
    let served = providers::fetch_attestation(&state.http, url)
        .await
        .map_err(|e| ApiError::invalid(format!("the node at {url}: {e}")))?;
    if served != registration.attestation {
        return Err(ApiError::invalid(format!("the node at {url} serves another attestation document")));
    }
    let registration = ProviderRegistration { url: url.to_owned(), ..registration };
    let id = providers::upsert(&state.db, &registration).await?;
    state.metrics.provider_healthy.get_or_create(&crate::metrics::ProviderLabel { provider: id.to_string() }).set(1);
    tracing::info!(provider = id, url, model = %registration.model, "provider registered");
    Ok(id)
}

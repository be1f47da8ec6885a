//! The HTTP routes. Handlers are plain functions taking the state and an
//! auth extractor ([`crate::auth`]); see `docs/api.md` and `/api/openapi.json`.

pub mod admin;
pub mod app;
pub mod registry;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::error::ApiError;
use crate::{relay, AppState};

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
        .route("/api/me", get(app::me))
        .route("/api/balance", get(app::balance))
        .route("/api/history", get(app::history))
        .route("/api/providers", get(app::providers))
        .route("/api/topup", post(app::topup))
        .route("/api/chat", post(relay::chat))
        .route("/api/providers/register", post(registry::register))
        .route("/api/admin/overview", get(admin::overview))
        .route("/api/admin/providers", get(admin::providers).post(admin::add_provider))
        .route("/api/admin/providers/{id}/enabled", post(admin::set_provider_enabled))
        .route("/api/admin/users", get(admin::users))
        .route("/api/admin/users/{id}/banned", post(admin::ban))
        .route("/api/admin/users/{id}/credit", post(admin::credit))
        .route("/api/admin/ledger/check", get(admin::ledger_check))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The `limit` of a paged list: 1 to 200, 50 when absent.
fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 200"));
    }
    Ok(limit)
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let database = sqlx::query("SELECT 1").execute(state.db.pool()).await.is_ok();
    let status = if database { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "status": if database { "ok" } else { "database unreachable" } })))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

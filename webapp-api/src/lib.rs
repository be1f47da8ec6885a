//! Chrysalis platform API.
//!
//! [`relay`] passes sealed chats to provider nodes and settles them by
//! their receipts; [`ledger`] is the double-entry nanoTON ledger;
//! [`providers`] is the registry with health and scores; [`users`] and
//! [`auth`] know who is calling; [`routes`] maps HTTP onto them; [`db`]
//! is the one pool over SQLite or PostgreSQL. The binary `chrysalis-api`
//! wires them. The platform never holds a key that opens a chat.

pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod ledger;
pub mod metrics;
pub mod providers;
pub mod rate_limit;
pub mod relay;
pub mod routes;
pub mod users;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;

/// Top-up intents a user may start per minute.
const TOPUPS_PER_MINUTE: u32 = 5;

/// Everything the handlers need, passed explicitly.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub settings: Arc<Settings>,
    /// For provider nodes: registration checks, health checks, the relay.
    pub http: reqwest::Client,
    pub metrics: Metrics,
    pub chat_limiter: Arc<RateLimiter>,
    /// Top-up intents each write a row; a few a minute is plenty.
    pub topup_limiter: Arc<RateLimiter>,
    /// Relays streaming now; shutdown waits for them to settle.
    pub relays: TaskTracker,
}

impl AppState {
    pub fn new(db: Db, settings: Settings) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Self {
            chat_limiter: Arc::new(RateLimiter::new(settings.chats_per_minute)),
            topup_limiter: Arc::new(RateLimiter::new(TOPUPS_PER_MINUTE)),
            db,
            settings: Arc::new(settings),
            http,
            metrics: Metrics::new(),
            relays: TaskTracker::new(),
        }
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then waits for
/// open requests and for every relay to settle its chat. Health checks and
/// the stale-hold sweep run meanwhile.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    let upkeep = tokio::spawn(upkeep(state.clone(), stop.clone()));
    let app = routes::router(state.clone()).layer(tower_http::trace::TraceLayer::new_for_http());
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    stop.cancel();
    state.relays.close();
    state.relays.wait().await;
    let _ = upkeep.await;
    served
}

/// Health-checks every enabled provider and releases stale holds, once per
/// health interval, until `stop`.
async fn upkeep(state: AppState, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(state.settings.health_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(error) = check_providers(&state).await {
            tracing::error!(%error, "health checks");
        }
        let stale_ms = i64::try_from(state.settings.stale_hold.as_millis()).unwrap_or(i64::MAX);
        match ledger::release_stale_holds(&state.db, stale_ms).await {
            Ok(0) => {}
            Ok(released) => tracing::warn!(released, "released holds of chats that never settled"),
            Err(error) => tracing::error!(%error, "releasing stale holds"),
        }
    }
}

async fn check_providers(state: &AppState) -> Result<(), sqlx::Error> {
    let enabled: Vec<_> = providers::list(&state.db).await?.into_iter().filter(|p| p.enabled).collect();
    let checks = enabled.iter().map(|p| providers::check_health(&state.db, &state.http, &state.settings.policy, p));
    for (provider, healthy) in enabled.iter().zip(futures_util::future::join_all(checks).await) {
        let label = metrics::ProviderLabel { provider: provider.id.to_string() };
        state.metrics.provider_healthy.get_or_create(&label).set(i64::from(healthy?));
    }
    Ok(())
}

/// Unix time in milliseconds.
pub fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Fresh random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

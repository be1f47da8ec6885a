//! Chrysalis provider node.
//!
//! [`engine`] owns llama.cpp and batches every active request into one
//! decode step; [`api`] puts the OpenAI-compatible HTTP API in front of it;
//! [`config`] is the command line. The binary `chrysalis-node` wires them.

pub mod api;
pub mod config;
pub mod engine;
pub mod metrics;

use std::future::Future;

use tokio::net::TcpListener;

/// Serves the API on `listener` until `shutdown` resolves, then finishes the
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: api::AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = api::router(state).layer(tower_http::trace::TraceLayer::new_for_http());
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use chrysalis_inference::api::AppState;
use chrysalis_inference::config::NodeArgs;
use chrysalis_inference::engine::Engine;
use chrysalis_inference::metrics::Metrics;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,llama-cpp-2=warn")))
        .init();
    let args = NodeArgs::parse();

    let metrics = Metrics::new();
    let config = args.engine_config();
    tracing::info!(model = %config.model_path.display(), threads = config.threads, parallel = config.parallel,
        ctx_size = config.ctx_size, "loading model");
    let engine = Engine::start(config, metrics.clone()).context("starting the engine")?;
    let state = AppState { engine, metrics, model_id: args.model_id(), max_body_bytes: args.max_body_bytes };

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("chrysalis-node listening on http://{addr} (model {})", state.model_id);
    chrysalis_inference::serve(listener, state, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down; finishing requests in flight");
}

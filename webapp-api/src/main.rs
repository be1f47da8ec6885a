use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use chrysalis_api::config::ApiArgs;
use chrysalis_api::db::Db;
use chrysalis_api::AppState;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let args = ApiArgs::parse();
    let settings = args.settings()?;
    let url = args.database_url();
    let db = Db::connect(&url).await.context("opening the database")?;
    tracing::info!(backend = ?db.backend(), "database ready");
    if settings.policy.allow_unattested {
        tracing::warn!("accepting providers outside any TEE (--allow-unattested): development only");
    }
    let state = AppState::new(db.clone(), settings);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    println!("chrysalis-api listening on http://{}", listener.local_addr()?);
    chrysalis_api::serve(listener, state, chrysalis_shutdown::signal()).await?;
    db.close().await;
    Ok(())
}

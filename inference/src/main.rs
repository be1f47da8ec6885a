use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use chrysalis_inference::config::NodeArgs;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,llama-cpp-2=warn")))
        .init();
    let args = NodeArgs::parse();
    let state = chrysalis_inference::build_state(&args)?;
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("chrysalis-node listening on http://{addr} (model {})", state.model_id);
    chrysalis_inference::start_registration(&args, &state, addr);
    chrysalis_inference::serve(listener, state, chrysalis_shutdown::signal()).await?;
    Ok(())
}

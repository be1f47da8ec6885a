//! Chrysalis provider node.
//!
//! [`engine`] owns llama.cpp and batches every active request into one
//! decode step; [`api`] puts the OpenAI-compatible HTTP API and the sealed
//! (OHTTP) endpoint in front of it; [`identity`] holds the node's keys and
//! attestation document and signs receipts; [`replay`] bounds sealed-request
//! replays; [`register`] announces the node to a platform; [`config`] is the
//! command line. The binary `chrysalis-node` wires them.

pub mod api;
pub mod config;
pub mod engine;
pub mod identity;
pub mod metrics;
pub mod register;
pub mod replay;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use chrysalis_protocol::registry::ProviderRegistration;
use tokio::net::TcpListener;

use crate::config::NodeArgs;
use crate::engine::Engine;
use crate::identity::{sha256_file, NodeIdentity};
use crate::metrics::Metrics;
use crate::replay::ReplayGuard;

/// Most sealed requests remembered for replay checks (about 5 MB).
const REPLAY_CAPACITY: usize = 100_000;

/// Hashes the model, starts the engine and makes the node's identity.
pub fn build_state(args: &NodeArgs) -> anyhow::Result<api::AppState> {
    let metrics = Metrics::new();
    let config = args.engine_config();
    tracing::info!(model = %config.model_path.display(), threads = config.threads, parallel = config.parallel,
        ctx_size = config.ctx_size, "loading model");
    let model_sha256 = sha256_file(&config.model_path)
        .with_context(|| format!("reading model file {}", config.model_path.display()))?;
    let engine = Engine::start(config, metrics.clone()).context("starting the engine")?;
    let identity = NodeIdentity::generate(model_sha256);
    tracing::info!(model_sha256 = %identity.document.model_sha256, "node identity created (tee: none)");
    Ok(api::AppState {
        engine,
        metrics,
        identity: Arc::new(identity),
        replay: Arc::new(Mutex::new(ReplayGuard::new(args.replay_window_secs, REPLAY_CAPACITY))),
        model_id: args.model_id(),
        max_body_bytes: args.max_body_bytes,
    })
}

/// Starts a node on its own thread and runtime, for embedding (tests, a
/// single-process local setup); returns once it listens.
pub fn spawn(args: NodeArgs) -> anyhow::Result<SocketAddr> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("chrysalis-node".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => return drop(ready_tx.send(Err(anyhow::Error::from(e)))),
        };
        runtime.block_on(async move {
            let started = async {
                let state = build_state(&args)?;
                let listener = TcpListener::bind(args.listen).await?;
                anyhow::Ok((state, listener))
            };
            match started.await {
                Ok((state, listener)) => {
                    if let Ok(addr) = listener.local_addr() {
                        start_registration(&args, &state, addr);
                    }
                    let _ = ready_tx.send(listener.local_addr().map_err(Into::into));
                    let _ = serve(listener, state, std::future::pending()).await;
                }
                Err(e) => drop(ready_tx.send(Err(e))),
            }
        });
    })?;
    ready_rx.recv().context("the node thread exited during start")?
}

/// Registers with the platform in the background when `--register` is set.
pub fn start_registration(args: &NodeArgs, state: &api::AppState, listening_on: SocketAddr) {
    let Some(platform) = args.register.clone() else { return };
    let registration = ProviderRegistration {
        url: args.public_url.clone().unwrap_or_else(|| format!("http://{listening_on}")),
        model: state.model_id.clone(),
        prices: args.prices(),
        attestation: state.identity.document.clone(),
        payout_address: args.payout_address.clone(),
    };
    tokio::spawn(register::register(platform, args.register_token.clone(), registration));
}

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

//! The node's command line; every flag can also come from a
//! `CHRYSALIS_NODE_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrysalis_protocol::money::{NanoTon, Prices};
use clap::Parser;

use crate::engine::EngineConfig;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "chrysalis-node",
    version,
    about = "Chrysalis provider node: answers chat requests with llama.cpp behind an OpenAI-compatible API",
    long_about = "Chrysalis provider node.\n\nLoads a GGUF model into llama.cpp and answers chat requests through an \
                  OpenAI-compatible HTTP API (POST /v1/chat/completions, GET /v1/models, GET /health, GET /metrics). \
                  All active requests are decoded together in one batch per step (continuous batching); requests \
                  beyond the parallel slots wait in a bounded queue, and a full queue answers 503 with Retry-After."
)]
pub struct NodeArgs {
    /// GGUF model file to serve.
    #[arg(long, env = "CHRYSALIS_NODE_MODEL")]
    pub model: PathBuf,

    /// Name reported by /v1/models and in answers [default: the model file's name without .gguf].
    #[arg(long, env = "CHRYSALIS_NODE_MODEL_ID")]
    pub model_id: Option<String>,

    /// Address and port to listen on.
    #[arg(long, env = "CHRYSALIS_NODE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// CPU threads for llama.cpp [default: the cores available to this process].
    #[arg(long, env = "CHRYSALIS_NODE_THREADS")]
    pub threads: Option<u32>,

    /// Requests decoded together (slots); each keeps its own KV cache.
    #[arg(long, env = "CHRYSALIS_NODE_PARALLEL", default_value_t = 4)]
    pub parallel: u32,

    /// Context of one request in tokens (prompt plus answer). Memory is
    /// reserved for ctx-size times parallel tokens.
    #[arg(long, env = "CHRYSALIS_NODE_CTX_SIZE", default_value_t = 4096)]
    pub ctx_size: u32,

    /// Most tokens fed into one decode step (answer tokens plus prompt chunks).
    #[arg(long, env = "CHRYSALIS_NODE_BATCH_SIZE", default_value_t = 512)]
    pub batch_size: u32,

    /// Requests that may wait for a free slot; more get 503.
    #[arg(long, env = "CHRYSALIS_NODE_QUEUE", default_value_t = 64)]
    pub queue: usize,

    /// Model layers to offload to the GPU (needs a build with `--features cuda`).
    #[arg(long, env = "CHRYSALIS_NODE_N_GPU_LAYERS", default_value_t = 0)]
    pub n_gpu_layers: u32,

    /// Sealed requests must be sent within this many seconds of the node's
    /// clock; each is accepted once inside that window.
    #[arg(long, env = "CHRYSALIS_NODE_REPLAY_WINDOW_SECS", default_value_t = 120)]
    pub replay_window_secs: u64,

    /// Largest accepted request body in bytes; larger ones get 413.
    #[arg(long, env = "CHRYSALIS_NODE_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,

    /// Chrysalis platform to register with once listening, e.g. http://127.0.0.1:8000.
    #[arg(long, env = "CHRYSALIS_NODE_REGISTER")]
    pub register: Option<String>,

    /// Bearer token the platform asks of registering providers.
    #[arg(long, env = "CHRYSALIS_NODE_REGISTER_TOKEN")]
    pub register_token: Option<String>,

    /// URL the platform reaches this node at [default: http://<listen address>].
    #[arg(long, env = "CHRYSALIS_NODE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Price per million prompt tokens, in TON (up to 9 decimals).
    #[arg(long, env = "CHRYSALIS_NODE_PROMPT_PRICE", default_value = "0.01", value_parser = parse_ton)]
    pub prompt_price: NanoTon,

    /// Price per million completion tokens, in TON (up to 9 decimals).
    #[arg(long, env = "CHRYSALIS_NODE_COMPLETION_PRICE", default_value = "0.02", value_parser = parse_ton)]
    pub completion_price: NanoTon,

    /// TON address the provider is paid out to.
    #[arg(long, env = "CHRYSALIS_NODE_PAYOUT_ADDRESS")]
    pub payout_address: Option<String>,
}

fn parse_ton(text: &str) -> Result<NanoTon, String> {
    NanoTon::from_ton_str(text).ok_or_else(|| format!("{text:?} is not an amount of TON such as 0.05"))
}

impl NodeArgs {
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            model_path: self.model.clone(),
            threads: self.threads.unwrap_or_else(available_cores),
            parallel: self.parallel,
            ctx_size: self.ctx_size,
            batch_size: self.batch_size,
            queue_capacity: self.queue,
            n_gpu_layers: self.n_gpu_layers,
        }
    }

    pub fn prices(&self) -> Prices {
        Prices { prompt_per_million: self.prompt_price, completion_per_million: self.completion_price }
    }

    pub fn model_id(&self) -> String {
        self.model_id.clone().unwrap_or_else(|| model_id_from_path(&self.model))
    }
}

pub fn available_cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

fn model_id_from_path(path: &std::path::Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.strip_suffix(".gguf").unwrap_or(n).to_owned())
        .unwrap_or_else(|| "model".to_owned())
}

//! The inference engine: one thread owns the llama.cpp context and decodes
//! every active request together (continuous batching).
//!
//! Callers talk to it through [`Engine`]: render a chat into prompt tokens,
//! then [`Engine::submit`] a [`Generation`] and read [`Event`]s back. The
//! engine never blocks on a caller: events go through unbounded channels,
//! and a caller that drops its receiver cancels its request.

mod sampling;
mod text;
mod worker;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
pub use sampling::SamplingParams;

/// Engine settings (the node's command line fills these in).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub model_path: PathBuf,
    /// CPU threads for decoding.
    pub threads: u32,
    /// Requests decoded together; each gets its own sequence and KV cache.
    pub parallel: u32,
    /// Context (tokens) of one request: prompt plus answer.
    pub ctx_size: u32,
    /// Most tokens fed to one decode step (prompt chunks plus one per answer).
    pub batch_size: u32,
    /// Requests that may wait for a slot before new ones are turned away.
    pub queue_capacity: usize,
    /// Model layers offloaded to the GPU (needs the `cuda` build).
    pub n_gpu_layers: u32,
}

/// One chat message as the engine's template sees it.
#[derive(Debug, Clone)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
}

/// A request ready for the engine: tokens in, limits and sampling set.
#[derive(Debug)]
pub struct Generation {
    pub prompt: Vec<LlamaToken>,
    pub max_tokens: u32,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// Keep generating past the end-of-generation token (benchmarks).
    pub ignore_eos: bool,
}

/// Why an answer ended, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Counts and timings of one finished request.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u32,
    /// Prompt tokens whose KV cache was reused from an earlier request.
    pub cached_prompt_tokens: u32,
    pub completion_tokens: u32,
    pub time_to_first_token: Duration,
    pub generation_time: Duration,
}

/// What the engine sends back while a request runs.
#[derive(Debug)]
pub enum Event {
    /// More answer text (never split inside a character or a stop string).
    Text(String),
    /// The answer is complete.
    Done { finish_reason: FinishReason, usage: Usage },
    /// The engine could not finish the request.
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model file {path}: {reason}")]
    ModelFile { path: PathBuf, reason: String },
    #[error("could not start llama.cpp: {0}")]
    Backend(String),
    #[error("invalid engine setting: {0}")]
    Config(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PromptError {
    #[error("the model's chat template could not render these messages")]
    Template,
    #[error("the prompt has {prompt_tokens} tokens but the context holds {ctx_size}; shorten the conversation")]
    TooLong { prompt_tokens: usize, ctx_size: u32 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("all {parallel} slots are busy and {queued} requests are waiting; retry shortly")]
    QueueFull { parallel: u32, queued: usize },
    #[error("the engine has stopped")]
    Stopped,
}

/// A queued request and where its events go.
struct Job {
    generation: Generation,
    events: mpsc::UnboundedSender<Event>,
    submitted_at: Instant,
}

/// Handle to the engine thread. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    model: Arc<LlamaModel>,
    template: LlamaChatTemplate,
    jobs: mpsc::Sender<Job>,
    config: EngineConfig,
}

/// llama.cpp's backend may be initialised once per process.
fn backend() -> Result<&'static LlamaBackend, EngineError> {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    if let Some(backend) = BACKEND.get() {
        return Ok(backend);
    }
    let backend = LlamaBackend::init().map_err(|e| EngineError::Backend(e.to_string()))?;
    Ok(BACKEND.get_or_init(|| backend))
}

impl Engine {
    /// Loads the model and starts the engine thread; returns once the
    /// context is allocated and the engine accepts requests.
    pub fn start(config: EngineConfig, metrics: Metrics) -> Result<Self, EngineError> {
        validate(&config)?;
        let backend = backend()?;
        llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());

        let model_error = |reason: String| EngineError::ModelFile { path: config.model_path.clone(), reason };
        if !config.model_path.is_file() {
            return Err(model_error("no such file".into()));
        }
        let params = LlamaModelParams::default().with_n_gpu_layers(config.n_gpu_layers);
        let model =
            LlamaModel::load_from_file(backend, &config.model_path, &params).map_err(|e| model_error(e.to_string()))?;
        let template = model
            .chat_template(None)
            .map_err(|e| model_error(format!("no usable chat template in the GGUF metadata: {e}")))?;
        let model = Arc::new(model);

        let (jobs_tx, jobs_rx) = mpsc::channel(config.queue_capacity);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let worker = worker::Worker::new(backend, model.clone(), config.clone(), metrics);
        std::thread::Builder::new()
            .name("chrysalis-engine".into())
            .spawn(move || worker.run(jobs_rx, ready_tx))
            .map_err(|e| EngineError::Backend(e.to_string()))?;
        ready_rx
            .recv()
            .map_err(|_| EngineError::Backend("engine thread exited during start".into()))?
            .map_err(EngineError::Backend)?;

        Ok(Self { inner: Arc::new(Inner { model, template, jobs: jobs_tx, config }) })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Applies the model's own chat template and tokenizes the result.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<Vec<LlamaToken>, PromptError> {
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.to_owned(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| PromptError::Template)?;
        let prompt = self
            .inner
            .model
            .apply_chat_template(&self.inner.template, &chat, true)
            .map_err(|_| PromptError::Template)?;
        let tokens = self.inner.model.vocab().tokenize(prompt.as_bytes(), true, true);
        let ctx_size = self.inner.config.ctx_size;
        // One position must stay free for the first answer token.
        if tokens.len() >= ctx_size as usize {
            return Err(PromptError::TooLong { prompt_tokens: tokens.len(), ctx_size });
        }
        Ok(tokens)
    }

    /// Queues a request. Fails at once when the queue is full.
    pub fn submit(&self, generation: Generation) -> Result<mpsc::UnboundedReceiver<Event>, SubmitError> {
        let (events, receiver) = mpsc::unbounded_channel();
        match self.inner.jobs.try_send(Job { generation, events, submitted_at: Instant::now() }) {
            Ok(()) => Ok(receiver),
            Err(mpsc::error::TrySendError::Full(_)) => {
                Err(SubmitError::QueueFull { parallel: self.inner.config.parallel, queued: self.queue_depth() })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::Stopped),
        }
    }

    /// Requests waiting for a slot.
    pub fn queue_depth(&self) -> usize {
        self.inner.jobs.max_capacity() - self.inner.jobs.capacity()
    }
}

fn validate(config: &EngineConfig) -> Result<(), EngineError> {
    let fail = |what: &str| Err(EngineError::Config(what.to_owned()));
    if config.threads == 0 {
        return fail("threads must be at least 1");
    }
    if config.parallel == 0 || config.parallel > 256 {
        return fail("parallel slots must be between 1 and 256");
    }
    if config.ctx_size < 64 {
        return fail("context size must be at least 64 tokens");
    }
    if config.batch_size < config.parallel {
        return fail("batch size must be at least the number of parallel slots");
    }
    if config.queue_capacity == 0 {
        return fail("queue capacity must be at least 1");
    }
    if u64::from(config.ctx_size) * u64::from(config.parallel) > u64::from(u32::MAX) {
        return fail("context size times parallel slots is too large");
    }
    Ok(())
}

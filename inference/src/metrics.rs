//! Prometheus metrics of one node. State is explicit: each node owns a
//! registry, so several nodes in one process (tests) never mix figures.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// How a request ended. A fixed set: labels never carry request content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stop,
    Length,
    Cancelled,
    Failed,
    Invalid,
    QueueFull,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Stop => "stop",
            Outcome::Length => "length",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
            Outcome::Invalid => "invalid",
            Outcome::QueueFull => "queue_full",
        }
    }
}

/// Why a sealed request was refused before it reached the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedRejection {
    OpenFailed,
    Malformed,
    Replay,
    QueueFull,
}

impl SealedRejection {
    fn label(self) -> &'static str {
        match self {
            SealedRejection::OpenFailed => "open_failed",
            SealedRejection::Malformed => "malformed",
            SealedRejection::Replay => "replay",
            SealedRejection::QueueFull => "queue_full",
        }
    }
}

type Label = Vec<(&'static str, &'static str)>;

#[derive(Clone)]
pub struct Metrics {
    requests: Family<Label, Counter>,
    sealed_rejections: Family<Label, Counter>,
    pub prompt_tokens: Counter,
    pub cached_prompt_tokens: Counter,
    pub completion_tokens: Counter,
    /// Requests that reached a slot and ran on the model.
    pub inference_runs: Counter,
    pub decode_steps: Counter,
    pub queue_depth: Gauge,
    pub active_slots: Gauge,
    pub time_to_first_token: Histogram,
    pub tokens_per_second: Histogram,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chrysalis_node");
        let requests = Family::<Label, Counter>::default();
        let sealed_rejections = Family::<Label, Counter>::default();
        let prompt_tokens = Counter::default();
        let cached_prompt_tokens = Counter::default();
        let completion_tokens = Counter::default();
        let inference_runs = Counter::default();
        let decode_steps = Counter::default();
        let queue_depth = Gauge::default();
        let active_slots = Gauge::default();
        let time_to_first_token = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let tokens_per_second = Histogram::new(exponential_buckets(1.0, 2.0, 14));

        registry.register("requests", "Chat requests by outcome", requests.clone());
        registry.register(
            "sealed_rejections",
            "Sealed requests refused before inference, by reason",
            sealed_rejections.clone(),
        );
        registry.register("prompt_tokens", "Prompt tokens of finished requests", prompt_tokens.clone());
        registry.register(
            "cached_prompt_tokens",
            "Prompt tokens served from a kept KV cache instead of evaluated",
            cached_prompt_tokens.clone(),
        );
        registry.register("completion_tokens", "Generated tokens", completion_tokens.clone());
        registry.register("inference_runs", "Requests that ran on the model", inference_runs.clone());
        registry.register("decode_steps", "Batched decode calls into llama.cpp", decode_steps.clone());
        registry.register("queue_depth", "Requests waiting for a slot", queue_depth.clone());
        registry.register("active_slots", "Slots running a request", active_slots.clone());
        registry.register(
            "time_to_first_token_seconds",
            "From a request reaching a slot to its first token",
            time_to_first_token.clone(),
        );
        registry.register(
            "tokens_per_second",
            "Generation speed of finished requests (completion tokens per second after the first)",
            tokens_per_second.clone(),
        );

        Self {
            requests,
            sealed_rejections,
            prompt_tokens,
            cached_prompt_tokens,
            completion_tokens,
            inference_runs,
            decode_steps,
            queue_depth,
            active_slots,
            time_to_first_token,
            tokens_per_second,
            registry: Arc::new(registry),
        }
    }

    pub fn count_request(&self, outcome: Outcome) {
        self.requests.get_or_create(&vec![("outcome", outcome.label())]).inc();
    }

    pub fn count_sealed_rejection(&self, reason: SealedRejection) {
        self.sealed_rejections.get_or_create(&vec![("reason", reason.label())]).inc();
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

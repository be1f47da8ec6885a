//! Prometheus metrics of the platform. Labels are outcomes and provider
//! ids, never anything a user wrote.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    pub provider: String,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Relayed chats by how they ended (answered, no_receipt, bad_receipt, ...).
    pub chats: Family<OutcomeLabel, Counter>,
    /// Chats refused before relaying (insufficient_funds, rate_limited, ...).
    pub refused: Family<OutcomeLabel, Counter>,
    /// Attempts that failed before the first byte and moved on.
    pub failovers: Counter,
    pub in_flight: Gauge,
    pub charged_nanoton: Counter<u64, AtomicU64>,
    pub commission_nanoton: Counter<u64, AtomicU64>,
    pub time_to_first_byte_seconds: Histogram,
    /// 1 when the last health check of a provider passed, else 0.
    pub provider_healthy: Family<ProviderLabel, Gauge>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chrysalis_api");
        let chats = Family::<OutcomeLabel, Counter>::default();
        registry.register("chats", "Relayed chats by outcome", chats.clone());
        let refused = Family::<OutcomeLabel, Counter>::default();
        registry.register("chats_refused", "Chats refused before relaying, by reason", refused.clone());
        let failovers = Counter::default();
        registry.register("failovers", "Provider attempts that failed before the first byte", failovers.clone());
        let in_flight = Gauge::default();
        registry.register("chats_in_flight", "Chats being relayed now", in_flight.clone());
        let charged_nanoton = Counter::<u64, AtomicU64>::default();
        registry.register("charged_nanoton", "nanoTON charged to users for chats", charged_nanoton.clone());
        let commission_nanoton = Counter::<u64, AtomicU64>::default();
        registry.register("commission_nanoton", "nanoTON of platform commission", commission_nanoton.clone());
        let time_to_first_byte_seconds =
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        registry.register(
            "time_to_first_byte_seconds",
            "Time from a chat's arrival to the provider's first byte",
            time_to_first_byte_seconds.clone(),
        );
        let provider_healthy = Family::<ProviderLabel, Gauge>::default();
        registry.register("provider_healthy", "Last health check of a provider (1 passed)", provider_healthy.clone());
        Self {
            registry: Arc::new(registry),
            chats,
            refused,
            failovers,
            in_flight,
            charged_nanoton,
            commission_nanoton,
            time_to_first_byte_seconds,
            provider_healthy,
        }
    }

    pub fn chat(&self, outcome: &'static str) {
        self.chats.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn refuse(&self, outcome: &'static str) {
        self.refused.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

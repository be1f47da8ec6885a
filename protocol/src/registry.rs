//! What a provider node tells the platform when it registers.

use serde::{Deserialize, Serialize};

use crate::attestation::AttestationDocument;
use crate::money::Prices;

/// Path of the platform's registration endpoint.
pub const REGISTER_PATH: &str = "/api/providers/register";

/// A node's registration. The platform checks `attestation` against its
/// policy and against what `url` serves, so a registration cannot claim
/// keys the node does not hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderRegistration {
    /// Base URL the platform reaches the node at.
    pub url: String,
    /// Model name the node answers as.
    pub model: String,
    pub prices: Prices,
    pub attestation: AttestationDocument,
    /// TON address for payouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_address: Option<String>,
}

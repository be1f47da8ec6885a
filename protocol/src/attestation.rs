//! The attestation document a node serves, and the client's check of it.
//!
//! The document names everything a client must trust about a node: the OHTTP
//! key it seals to, the Ed25519 key that signs receipts, the SHA-256 of the
//! model file, and the engine. [`AttestationDocument::report_data`] hashes
//! exactly these into 64 bytes: the value a TEE quote's report data must
//! carry, so that a quote vouches for these keys and this model. In
//! development the TEE section says `none` and no quote exists; clients
//! accept that only when told to.

use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

use crate::ohttp::{KeyConfig, AEAD_AES_256_GCM, KDF_HKDF_SHA256};

pub const DOCUMENT_VERSION: u32 = 1;
/// Largest document a client accepts (a TDX quote with its certificates fits well inside).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
const REPORT_DATA_DOMAIN: &[u8] = b"chrysalis attestation v1\0";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationDocument {
    pub version: u32,
    /// The OHTTP key configuration (RFC 9458 §3), base64url.
    pub ohttp_key_config: String,
    /// The Ed25519 receipt-signing public key, base64url.
    pub signing_key: String,
    /// SHA-256 of the served GGUF file, hex.
    pub model_sha256: String,
    /// Engine name and version.
    pub engine: String,
    pub tee: Tee,
    /// SHA-512 over the fields above, hex; see [`AttestationDocument::report_data`].
    pub report_data: String,
}

/// The trusted execution environment vouching for the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Tee {
    /// No TEE: a development node. Nothing but the node's word backs the keys.
    None,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttestationError {
    #[error("the attestation document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("the attestation document is malformed: {0}")]
    Malformed(String),
    #[error("the attestation document's report data does not match its contents")]
    ReportDataMismatch,
    #[error("the node runs outside any TEE (tee: none), so nothing proves who can read your prompts; accept such a node only for development (--allow-unattested)")]
    Unattested,
    #[error("the node serves model {0}, which the policy does not allow")]
    ModelNotAllowed(String),
    #[error("the node's key configuration does not offer HKDF-SHA256 with AES-256-GCM")]
    UnsupportedSuite,
}

/// What a client accepts.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Accept `tee: none` (development only).
    pub allow_unattested: bool,
    /// Model hashes accepted; empty accepts any model.
    pub allowed_models: Vec<[u8; 32]>,
}

/// A document that passed the policy: the keys to use with this node.
#[derive(Debug, Clone)]
pub struct VerifiedNode {
    pub key_config: KeyConfig,
    pub signing_key: VerifyingKey,
    pub model_sha256: [u8; 32],
    pub engine: String,
    pub tee: Tee,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

impl AttestationDocument {
    /// A development document (`tee: none`) for these keys and model.
    pub fn unattested(
        key_config: &KeyConfig,
        signing_key: &VerifyingKey,
        model_sha256: &[u8; 32],
        engine: &str,
    ) -> Self {
        let mut doc = Self {
            version: DOCUMENT_VERSION,
            ohttp_key_config: b64().encode(key_config.encode()),
            signing_key: b64().encode(signing_key.as_bytes()),
            model_sha256: hex::encode(model_sha256),
            engine: engine.to_owned(),
            tee: Tee::None,
            report_data: String::new(),
        };
        doc.report_data = hex::encode(doc.report_data());
        doc
    }

    /// SHA-512 of a domain label and the length-prefixed key configuration,
    /// signing key, model hash and engine: 64 bytes, the size of a TDX
    /// quote's REPORTDATA.
    pub fn report_data(&self) -> [u8; 64] {
        let mut hash = Sha512::new();
        hash.update(REPORT_DATA_DOMAIN);
        for field in [&self.ohttp_key_config, &self.signing_key, &self.model_sha256, &self.engine] {
            hash.update((field.len() as u32).to_be_bytes());
            hash.update(field.as_bytes());
        }
        hash.finalize().into()
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, AttestationError> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(AttestationError::TooLarge);
        }
        serde_json::from_slice(bytes).map_err(|e| AttestationError::Malformed(e.to_string()))
    }

    /// Checks the document's consistency and the client's policy.
    pub fn verify(&self, policy: &Policy) -> Result<VerifiedNode, AttestationError> {
        let malformed = |what: &str| AttestationError::Malformed(what.to_owned());
        if self.version != DOCUMENT_VERSION {
            return Err(malformed("unknown document version"));
        }
        let config_bytes =
            b64().decode(&self.ohttp_key_config).map_err(|_| malformed("ohttp_key_config is not base64url"))?;
        let key_config = KeyConfig::decode(&config_bytes).map_err(|e| AttestationError::Malformed(e.to_string()))?;
        let signing_bytes: [u8; 32] = b64()
            .decode(&self.signing_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed("signing_key is not 32 base64url bytes"))?;
        let signing_key =
            VerifyingKey::from_bytes(&signing_bytes).map_err(|_| malformed("signing_key is not an Ed25519 key"))?;
        let mut model_sha256 = [0u8; 32];
        hex::decode_to_slice(&self.model_sha256, &mut model_sha256)
            .map_err(|_| malformed("model_sha256 is not 64 hex digits"))?;
        if self.engine.len() > 256 {
            return Err(malformed("engine is longer than 256 bytes"));
        }
        if hex::decode(&self.report_data).ok().as_deref() != Some(&self.report_data()[..]) {
            return Err(AttestationError::ReportDataMismatch);
        }
        match self.tee {
            Tee::None if !policy.allow_unattested => return Err(AttestationError::Unattested),
            Tee::None => {}
        }
        if !policy.allowed_models.is_empty() && !policy.allowed_models.contains(&model_sha256) {
            return Err(AttestationError::ModelNotAllowed(self.model_sha256.clone()));
        }
        if !key_config.suites.contains(&(KDF_HKDF_SHA256, AEAD_AES_256_GCM)) {
            return Err(AttestationError::UnsupportedSuite);
        }
        Ok(VerifiedNode { key_config, signing_key, model_sha256, engine: self.engine.clone(), tee: self.tee.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ohttp::ServerKey;
    use ed25519_dalek::SigningKey;

    fn doc() -> AttestationDocument {
        let server = ServerKey::from_secret(1, &[5; 32]).unwrap();
        let signing = SigningKey::from_bytes(&[6; 32]).verifying_key();
        AttestationDocument::unattested(&server.config(), &signing, &[7; 32], "chrysalis-node test")
    }

    #[test]
    fn unattested_nodes_need_explicit_consent() {
        assert_eq!(doc().verify(&Policy::default()).err(), Some(AttestationError::Unattested));
        let node = doc().verify(&Policy { allow_unattested: true, ..Policy::default() }).unwrap();
        assert_eq!(node.model_sha256, [7; 32]);
    }

    #[test]
    fn any_changed_field_breaks_the_report_data() {
        let policy = Policy { allow_unattested: true, ..Policy::default() };
        let mut changed = doc();
        changed.engine.push('!');
        assert_eq!(changed.verify(&policy).err(), Some(AttestationError::ReportDataMismatch));
        let mut changed = doc();
        changed.model_sha256 = hex::encode([8; 32]);
        assert_eq!(changed.verify(&policy).err(), Some(AttestationError::ReportDataMismatch));
    }

    #[test]
    fn model_policy_applies() {
        let policy = Policy { allow_unattested: true, allowed_models: vec![[1; 32]] };
        assert!(matches!(doc().verify(&policy), Err(AttestationError::ModelNotAllowed(_))));
    }

    #[test]
    fn parse_limits_size_and_shape() {
        let json = serde_json::to_vec(&doc()).unwrap();
        assert_eq!(AttestationDocument::parse(&json).unwrap(), doc());
        assert_eq!(
            AttestationDocument::parse(&vec![b' '; MAX_DOCUMENT_BYTES + 1]).err(),
            Some(AttestationError::TooLarge)
        );
        let unknown_tee = String::from_utf8(json).unwrap().replace("\"none\"", "\"sgx\"");
        assert!(matches!(AttestationDocument::parse(unknown_tee.as_bytes()), Err(AttestationError::Malformed(_))));
    }
}

//! The node's keys and what it attests to. Keys are made at start and live
//! in memory only: a restarted node is a new identity with a new document.

use std::io::Read;
use std::path::Path;

use chrysalis_protocol::attestation::AttestationDocument;
use chrysalis_protocol::ohttp::ServerKey;
use chrysalis_protocol::rand_core::UnwrapErr;
use chrysalis_protocol::receipt::{Receipt, RequestId, SignedReceipt};
use chrysalis_protocol::SigningKey;
use sha2::{Digest, Sha256};

use crate::engine::Usage;

/// OHTTP key id of the node's one key.
const OHTTP_KEY_ID: u8 = 1;

pub struct NodeIdentity {
    pub ohttp: ServerKey,
    signing: SigningKey,
    pub model_sha256: [u8; 32],
    pub document: AttestationDocument,
}

/// The operating system's random source, in the form the protocol crate takes.
pub fn os_rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

impl NodeIdentity {
    pub fn generate(model_sha256: [u8; 32]) -> Self {
        let ohttp = ServerKey::generate(OHTTP_KEY_ID, &mut os_rng());
        let signing = SigningKey::from_bytes(&random_bytes());
        let engine = format!("chrysalis-node {} (llama.cpp via llama-cpp-2)", env!("CARGO_PKG_VERSION"));
        let document =
            AttestationDocument::unattested(&ohttp.config(), &signing.verifying_key(), &model_sha256, &engine);
        Self { ohttp, signing, model_sha256, document }
    }

    pub fn sign_receipt(&self, request_id: RequestId, usage: &Usage) -> SignedReceipt {
        let timestamp_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Receipt {
            request_id,
            model_sha256: self.model_sha256,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            timestamp_ms,
        }
        .sign(&self.signing)
    }
}

/// SHA-256 of a file, read in blocks (models are gigabytes).
pub fn sha256_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hash.update(&buffer[..n]);
    }
    Ok(hash.finalize().into())
}

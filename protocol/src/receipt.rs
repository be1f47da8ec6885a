//! Usage receipts: what a node signs at the end of every request so the
//! platform can charge without reading the conversation.
//!
//! Wire form (129 bytes, base64url without padding in text):
//! `version (1) = 1 | request_id (16) | model_sha256 (32) | prompt_tokens (u32 BE)
//!  | completion_tokens (u32 BE) | timestamp_ms (u64 BE) | Ed25519 signature (64)`.
//! The signature covers `"chrysalis receipt v1" || 0x00 || the first 65 bytes`.

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

pub const RECEIPT_VERSION: u8 = 1;
const BODY_LEN: usize = 1 + 16 + 32 + 4 + 4 + 8;
pub const SIGNED_RECEIPT_LEN: usize = BODY_LEN + 64;
const DOMAIN: &[u8] = b"chrysalis receipt v1\0";

/// A random id the platform gives each relayed request (or the node makes up
/// for direct requests). It links a receipt to one hold, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub [u8; 16]);

impl RequestId {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Result<Self, ReceiptError> {
        let mut id = [0u8; 16];
        hex::decode_to_slice(text, &mut id).map_err(|_| ReceiptError::Malformed("a request id is 32 hex digits"))?;
        Ok(Self(id))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub request_id: RequestId,
    pub model_sha256: [u8; 32],
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Unix time in milliseconds when the request finished.
    pub timestamp_ms: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("malformed receipt: {0}")]
    Malformed(&'static str),
    #[error("the receipt's signature does not verify with the node's attested key")]
    BadSignature,
}

impl Receipt {
    fn body(&self) -> [u8; BODY_LEN] {
        let mut out = [0u8; BODY_LEN];
        out[0] = RECEIPT_VERSION;
        out[1..17].copy_from_slice(&self.request_id.0);
        out[17..49].copy_from_slice(&self.model_sha256);
        out[49..53].copy_from_slice(&self.prompt_tokens.to_be_bytes());
        out[53..57].copy_from_slice(&self.completion_tokens.to_be_bytes());
        out[57..65].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        out
    }

    pub fn sign(&self, key: &SigningKey) -> SignedReceipt {
        let signature = key.sign(&[DOMAIN, &self.body()].concat());
        SignedReceipt { receipt: self.clone(), signature: signature.to_bytes() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReceipt {
    receipt: Receipt,
    signature: [u8; 64],
}

impl SignedReceipt {
    pub fn to_bytes(&self) -> Vec<u8> {
        [&self.receipt.body()[..], &self.signature].concat()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ReceiptError> {
        if bytes.len() != SIGNED_RECEIPT_LEN {
            return Err(ReceiptError::Malformed("a signed receipt is 129 bytes"));
        }
        if bytes[0] != RECEIPT_VERSION {
            return Err(ReceiptError::Malformed("unknown receipt version"));
        }
        let field = |range: std::ops::Range<usize>| &bytes[range];
        let receipt = Receipt {
            request_id: RequestId(field(1..17).try_into().expect("16 bytes")),
            model_sha256: field(17..49).try_into().expect("32 bytes"),
            prompt_tokens: u32::from_be_bytes(field(49..53).try_into().expect("4 bytes")),
            completion_tokens: u32::from_be_bytes(field(53..57).try_into().expect("4 bytes")),
            timestamp_ms: u64::from_be_bytes(field(57..65).try_into().expect("8 bytes")),
        };
        Ok(Self { receipt, signature: field(BODY_LEN..SIGNED_RECEIPT_LEN).try_into().expect("64 bytes") })
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.to_bytes())
    }

    pub fn from_base64(text: &str) -> Result<Self, ReceiptError> {
        if text.len() > 2 * SIGNED_RECEIPT_LEN {
            return Err(ReceiptError::Malformed("too long"));
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| ReceiptError::Malformed("not base64url"))?;
        Self::from_bytes(&bytes)
    }

    /// The receipt, once its signature checks out against `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<&Receipt, ReceiptError> {
        let signature = Signature::from_bytes(&self.signature);
        key.verify(&[DOMAIN, &self.receipt.body()].concat(), &signature).map_err(|_| ReceiptError::BadSignature)?;
        Ok(&self.receipt)
    }

    /// The receipt's fields without checking the signature (for display
    /// before verification; never for charging).
    pub fn unverified(&self) -> &Receipt {
        &self.receipt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Receipt {
        Receipt {
            request_id: RequestId([7; 16]),
            model_sha256: [9; 32],
            prompt_tokens: 21,
            completion_tokens: 300,
            timestamp_ms: 1_790_000_000_000,
        }
    }

    #[test]
    fn a_signed_receipt_verifies_after_the_round_trip() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let signed = receipt().sign(&key);
        let parsed = SignedReceipt::from_base64(&signed.to_base64()).unwrap();
        assert_eq!(parsed.verify(&key.verifying_key()).unwrap(), &receipt());
    }

    #[test]
    fn any_changed_byte_fails() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let bytes = receipt().sign(&key).to_bytes();
        for i in 1..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            let result = SignedReceipt::from_bytes(&bad).and_then(|r| r.verify(&key.verifying_key()).map(|_| ()));
            assert!(result.is_err(), "byte {i} changed and the receipt still verified");
        }
    }

    #[test]
    fn another_key_fails() {
        let signed = receipt().sign(&SigningKey::from_bytes(&[1; 32]));
        let other = SigningKey::from_bytes(&[2; 32]).verifying_key();
        assert_eq!(signed.verify(&other), Err(ReceiptError::BadSignature));
    }

    #[test]
    fn malformed_input_is_refused() {
        assert!(SignedReceipt::from_base64("!!").is_err());
        assert!(SignedReceipt::from_bytes(&[1; 10]).is_err());
        assert!(RequestId::from_hex("xyz").is_err());
        assert_eq!(RequestId::from_hex(&RequestId([0xab; 16]).to_hex()).unwrap(), RequestId([0xab; 16]));
    }
}

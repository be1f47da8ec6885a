//! Oblivious HTTP encapsulation (RFC 9458) and its chunked form
//! (draft-ietf-ohai-chunked-ohttp), over HPKE (RFC 9180).
//!
//! Chrysalis uses one suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! AES-256-GCM. The functions are generic over the AEAD so the RFC test
//! vectors (which use AES-128-GCM) run through the same code.
//!
//! Requests are sealed whole; responses stream as chunks, each opened as it
//! arrives by [`ChunkedResponseOpener`].

use aead::{Aead as _, KeyInit, Payload};
use hpke::aead::{Aead, AeadCtxR, AeadCtxS, AesGcm128, AesGcm256};
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::rand_core::CryptoRng;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};

use crate::varint;

pub const KEM_X25519_HKDF_SHA256: u16 = 0x0020;
pub const KDF_HKDF_SHA256: u16 = 0x0001;
pub const AEAD_AES_128_GCM: u16 = 0x0001;
pub const AEAD_AES_256_GCM: u16 = 0x0002;

/// Length of an X25519 public key and of the encapsulated key `enc`.
pub const X25519_KEY_LEN: usize = 32;
/// Request header: key id, KEM, KDF, AEAD.
const HEADER_LEN: usize = 7;

const LABEL_REQUEST: &[u8] = b"message/bhttp request";
const LABEL_RESPONSE: &[u8] = b"message/bhttp response";
const LABEL_CHUNKED_REQUEST: &[u8] = b"message/bhttp chunked request";
const LABEL_CHUNKED_RESPONSE: &[u8] = b"message/bhttp chunked response";
const FINAL_CHUNK_AAD: &[u8] = b"final";

/// Chrysalis's AEAD; the others exist for test vectors.
pub type ProductAead = AesGcm256;

type Kem25519 = X25519HkdfSha256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OhttpError {
    #[error("the sealed message is truncated")]
    Truncated,
    #[error("the sealed message names key {0}, which this node does not hold")]
    UnknownKey(u8),
    #[error(
        "the sealed message asks for an unsupported algorithm suite (KEM {kem:#06x}, KDF {kdf:#06x}, AEAD {aead:#06x})"
    )]
    UnsupportedSuite { kem: u16, kdf: u16, aead: u16 },
    #[error("the sealed message could not be opened (wrong key or altered bytes)")]
    Open,
    #[error("the key configuration is malformed: {0}")]
    KeyConfig(&'static str),
    #[error("data follows the final chunk")]
    TrailingData,
}

/// AEAD algorithm id of an hpke AEAD type.
fn aead_id<A: Aead>() -> u16 {
    A::AEAD_ID
}

fn key_len<A: Aead>() -> usize {
    <<A::AeadImpl as aead::KeySizeUser>::KeySize as hpke::hybrid_array::typenum::Unsigned>::USIZE
}

fn nonce_len<A: Aead>() -> usize {
    <<A::AeadImpl as aead::AeadCore>::NonceSize as hpke::hybrid_array::typenum::Unsigned>::USIZE
}

/// An OHTTP key configuration (RFC 9458 §3): what a client needs to seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfig {
    pub key_id: u8,
    pub public_key: [u8; X25519_KEY_LEN],
    /// (KDF id, AEAD id) pairs the holder accepts.
    pub suites: Vec<(u16, u16)>,
}

impl KeyConfig {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + X25519_KEY_LEN + 2 + 4 * self.suites.len());
        out.push(self.key_id);
        out.extend_from_slice(&KEM_X25519_HKDF_SHA256.to_be_bytes());
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(&((4 * self.suites.len()) as u16).to_be_bytes());
        for (kdf, aead) in &self.suites {
            out.extend_from_slice(&kdf.to_be_bytes());
            out.extend_from_slice(&aead.to_be_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, OhttpError> {
        let mut r = Reader(bytes);
        let key_id = r.u8().ok_or(OhttpError::KeyConfig("too short"))?;
        let kem = r.u16().ok_or(OhttpError::KeyConfig("too short"))?;
        if kem != KEM_X25519_HKDF_SHA256 {
            return Err(OhttpError::KeyConfig("only DHKEM(X25519, HKDF-SHA256) is supported"));
        }
        let public_key = r.take(X25519_KEY_LEN).ok_or(OhttpError::KeyConfig("public key too short"))?;
        let suites_len = r.u16().ok_or(OhttpError::KeyConfig("too short"))? as usize;
        if suites_len == 0 || !suites_len.is_multiple_of(4) {
            return Err(OhttpError::KeyConfig("the cipher suite list must hold whole (KDF, AEAD) pairs"));
        }
        let mut list = Reader(r.take(suites_len).ok_or(OhttpError::KeyConfig("cipher suite list truncated"))?);
        let mut suites = Vec::new();
        while let (Some(kdf), Some(aead)) = (list.u16(), list.u16()) {
            suites.push((kdf, aead));
        }
        if !r.0.is_empty() {
            return Err(OhttpError::KeyConfig("bytes follow the key configuration"));
        }
        Ok(Self { key_id, public_key: public_key.try_into().expect("length checked"), suites })
    }

    fn public(&self) -> Result<<Kem25519 as Kem>::PublicKey, OhttpError> {
        <Kem25519 as Kem>::PublicKey::from_bytes(&self.public_key)
            .map_err(|_| OhttpError::KeyConfig("invalid public key"))
    }
}

/// The node's side: an X25519 key pair under a key id.
pub struct ServerKey {
    key_id: u8,
    secret: <Kem25519 as Kem>::PrivateKey,
    public: <Kem25519 as Kem>::PublicKey,
}

impl ServerKey {
    pub fn generate(key_id: u8, rng: &mut impl CryptoRng) -> Self {
        let (secret, public) = Kem25519::gen_keypair_with_rng(rng);
        Self { key_id, secret, public }
    }

    /// A key from its 32-byte X25519 secret (test vectors, sealed storage).
    pub fn from_secret(key_id: u8, secret: &[u8]) -> Result<Self, OhttpError> {
        let secret = <Kem25519 as Kem>::PrivateKey::from_bytes(secret)
            .map_err(|_| OhttpError::KeyConfig("invalid secret key"))?;
        let public = Kem25519::sk_to_pk(&secret);
        Ok(Self { key_id, secret, public })
    }

    /// The configuration clients seal to: Chrysalis's single suite.
    pub fn config(&self) -> KeyConfig {
        self.config_with_suites(vec![(KDF_HKDF_SHA256, AEAD_AES_256_GCM)])
    }

    pub fn config_with_suites(&self, suites: Vec<(u16, u16)>) -> KeyConfig {
        let public_key = self.public.to_bytes().as_slice().try_into().expect("X25519 public keys are 32 bytes");
        KeyConfig { key_id: self.key_id, public_key, suites }
    }

    /// Opens an RFC 9458 encapsulated request; the returned context seals
    /// the response.
    pub fn open_request<A: Aead>(&self, enc_request: &[u8]) -> Result<(Vec<u8>, ResponseContext<A>), OhttpError> {
        let (header, enc, rest) = self.split_request::<A>(enc_request)?;
        let mut ctx = self.receiver::<A>(LABEL_REQUEST, header, enc)?;
        let plaintext = ctx.open(rest, b"").map_err(|_| OhttpError::Open)?;
        Ok((plaintext, ResponseContext { ctx, enc: enc.to_vec(), label: LABEL_RESPONSE }))
    }

    /// Opens a chunked encapsulated request received whole. A request that
    /// ends without its final chunk is refused as truncated.
    pub fn open_chunked_request<A: Aead>(
        &self,
        enc_request: &[u8],
    ) -> Result<(Vec<u8>, ResponseContext<A>), OhttpError> {
        let (header, enc, mut rest) = self.split_request::<A>(enc_request)?;
        let mut ctx = self.receiver::<A>(LABEL_CHUNKED_REQUEST, header, enc)?;
        let mut plaintext = Vec::new();
        loop {
            let (len, used) = varint::decode(rest).ok_or(OhttpError::Truncated)?;
            rest = &rest[used..];
            if len == 0 {
                let last = ctx.open(rest, FINAL_CHUNK_AAD).map_err(|_| OhttpError::Open)?;
                plaintext.extend_from_slice(&last);
                break;
            }
            let len = usize::try_from(len).map_err(|_| OhttpError::Truncated)?;
            let chunk = rest.get(..len).ok_or(OhttpError::Truncated)?;
            plaintext.extend_from_slice(&ctx.open(chunk, b"").map_err(|_| OhttpError::Open)?);
            rest = &rest[len..];
        }
        Ok((plaintext, ResponseContext { ctx, enc: enc.to_vec(), label: LABEL_CHUNKED_RESPONSE }))
    }

    /// Splits an encapsulated request into its header, `enc` and sealed rest.
    fn split_request<'a, A: Aead>(&self, bytes: &'a [u8]) -> Result<RequestParts<'a>, OhttpError> {
        if bytes.len() < HEADER_LEN + X25519_KEY_LEN {
            return Err(OhttpError::Truncated);
        }
        let (header, rest) = bytes.split_at(HEADER_LEN);
        let mut r = Reader(header);
        let key_id = r.u8().expect("header length checked");
        let (kem, kdf, aead) = (r.u16().unwrap(), r.u16().unwrap(), r.u16().unwrap());
        if key_id != self.key_id {
            return Err(OhttpError::UnknownKey(key_id));
        }
        if kem != KEM_X25519_HKDF_SHA256 || kdf != KDF_HKDF_SHA256 || aead != aead_id::<A>() {
            return Err(OhttpError::UnsupportedSuite { kem, kdf, aead });
        }
        let (enc, rest) = rest.split_at(X25519_KEY_LEN);
        Ok((header, enc, rest))
    }

    fn receiver<A: Aead>(
        &self,
        label: &[u8],
        header: &[u8],
        enc: &[u8],
    ) -> Result<AeadCtxR<A, HkdfSha256, Kem25519>, OhttpError> {
        let encapped = <Kem25519 as Kem>::EncappedKey::from_bytes(enc).map_err(|_| OhttpError::Open)?;
        hpke::setup_receiver::<A, HkdfSha256, Kem25519>(&OpModeR::Base, &self.secret, &encapped, &info(label, header))
            .map_err(|_| OhttpError::Open)
    }
}

/// `info` = label || 0x00 || header (RFC 9458 §4.3).
fn info(label: &[u8], header: &[u8]) -> Vec<u8> {
    let mut info = Vec::with_capacity(label.len() + 1 + header.len());
    info.extend_from_slice(label);
    info.push(0);
    info.extend_from_slice(header);
    info
}

fn header<A: Aead>(key_id: u8) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = key_id;
    h[1..3].copy_from_slice(&KEM_X25519_HKDF_SHA256.to_be_bytes());
    h[3..5].copy_from_slice(&KDF_HKDF_SHA256.to_be_bytes());
    h[5..7].copy_from_slice(&aead_id::<A>().to_be_bytes());
    h
}

/// The client's side of one request: seals it and later opens the response.
pub struct ClientRequest<A: Aead> {
    ctx: AeadCtxS<A, HkdfSha256, Kem25519>,
    enc: Vec<u8>,
    header: [u8; HEADER_LEN],
}

impl<A: Aead> ClientRequest<A> {
    fn new(config: &KeyConfig, label: &[u8], rng: &mut impl CryptoRng) -> Result<Self, OhttpError> {
        if !config.suites.contains(&(KDF_HKDF_SHA256, aead_id::<A>())) {
            return Err(OhttpError::UnsupportedSuite {
                kem: KEM_X25519_HKDF_SHA256,
                kdf: KDF_HKDF_SHA256,
                aead: aead_id::<A>(),
            });
        }
        let header = header::<A>(config.key_id);
        let (encapped, ctx) = hpke::setup_sender_with_rng::<A, HkdfSha256, Kem25519>(
            &OpModeS::Base,
            &config.public()?,
            &info(label, &header),
            rng,
        )
        .map_err(|_| OhttpError::Open)?;
        Ok(Self { ctx, enc: encapped.to_bytes().to_vec(), header })
    }

    /// RFC 9458 encapsulated request: header || enc || sealed request.
    pub fn seal(
        config: &KeyConfig,
        request: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<(Vec<u8>, ResponseOpener<A>), OhttpError> {
        let mut this = Self::new(config, LABEL_REQUEST, rng)?;
        let sealed = this.ctx.seal(request, b"").map_err(|_| OhttpError::Open)?;
        let out = [&this.header[..], &this.enc, &sealed].concat();
        Ok((
            out,
            ResponseOpener { secret: this.export(LABEL_RESPONSE)?, enc: this.enc, aead: core::marker::PhantomData },
        ))
    }

    /// Chunked encapsulated request holding the whole request as its final chunk.
    pub fn seal_chunked(
        config: &KeyConfig,
        request: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<(Vec<u8>, ChunkedResponseOpener<A>), OhttpError> {
        let mut this = Self::new(config, LABEL_CHUNKED_REQUEST, rng)?;
        let sealed = this.ctx.seal(request, FINAL_CHUNK_AAD).map_err(|_| OhttpError::Open)?;
        let mut out = [&this.header[..], &this.enc].concat();
        varint::encode(0, &mut out);
        out.extend_from_slice(&sealed);
        let secret = this.export(LABEL_CHUNKED_RESPONSE)?;
        Ok((out, ChunkedResponseOpener::new(secret, this.enc)))
    }

    fn export(&self, label: &[u8]) -> Result<Vec<u8>, OhttpError> {
        let mut secret = vec![0u8; key_len::<A>().max(nonce_len::<A>())];
        self.ctx.export(label, &mut secret).map_err(|_| OhttpError::Open)?;
        Ok(secret)
    }
}

/// Derives the response AEAD key and nonce (RFC 9458 §4.4).
fn response_keys<A: Aead>(secret: &[u8], enc: &[u8], response_nonce: &[u8]) -> (A::AeadImpl, Vec<u8>) {
    let salt = [enc, response_nonce].concat();
    let prk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&salt), secret);
    let mut key = vec![0u8; key_len::<A>()];
    let mut nonce = vec![0u8; nonce_len::<A>()];
    // Expand cannot fail for lengths this small.
    prk.expand(b"key", &mut key).expect("AEAD key length is valid for HKDF");
    prk.expand(b"nonce", &mut nonce).expect("AEAD nonce length is valid for HKDF");
    let cipher = <A::AeadImpl as KeyInit>::new_from_slice(&key).expect("key has the AEAD's length");
    (cipher, nonce)
}

fn chunk_nonce(base: &[u8], counter: u64) -> Vec<u8> {
    let mut nonce = base.to_vec();
    for (byte, c) in nonce.iter_mut().rev().zip(counter.to_be_bytes().iter().rev()) {
        *byte ^= c;
    }
    nonce
}

fn aead_seal<A: Aead>(cipher: &A::AeadImpl, nonce: &[u8], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    cipher
        .encrypt(nonce.try_into().expect("nonce has the AEAD's length"), Payload { msg: plaintext, aad })
        .expect("AES-GCM seals any message below 64 GiB")
}

fn aead_open<A: Aead>(
    cipher: &A::AeadImpl,
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, OhttpError> {
    let nonce = nonce.try_into().map_err(|_| OhttpError::Open)?;
    cipher.decrypt(nonce, Payload { msg: ciphertext, aad }).map_err(|_| OhttpError::Open)
}

/// The node's side of a response.
pub struct ResponseContext<A: Aead> {
    ctx: AeadCtxR<A, HkdfSha256, Kem25519>,
    enc: Vec<u8>,
    label: &'static [u8],
}

impl<A: Aead> ResponseContext<A> {
    fn secret(&self) -> Result<Vec<u8>, OhttpError> {
        let mut secret = vec![0u8; key_len::<A>().max(nonce_len::<A>())];
        self.ctx.export(self.label, &mut secret).map_err(|_| OhttpError::Open)?;
        Ok(secret)
    }

    /// RFC 9458 encapsulated response: response_nonce || sealed response.
    pub fn seal_response(self, response: &[u8], rng: &mut impl CryptoRng) -> Result<Vec<u8>, OhttpError> {
        let mut response_nonce = vec![0u8; key_len::<A>().max(nonce_len::<A>())];
        rng.fill_bytes(&mut response_nonce);
        self.seal_response_with_nonce(response, response_nonce)
    }

    fn seal_response_with_nonce(self, response: &[u8], response_nonce: Vec<u8>) -> Result<Vec<u8>, OhttpError> {
        let (cipher, nonce) = response_keys::<A>(&self.secret()?, &self.enc, &response_nonce);
        Ok([response_nonce, aead_seal::<A>(&cipher, &nonce, b"", response)].concat())
    }

    /// Starts a chunked response; the returned prefix (the response nonce)
    /// goes first on the wire.
    pub fn chunked(self, rng: &mut impl CryptoRng) -> Result<(Vec<u8>, ChunkSealer<A>), OhttpError> {
        let mut response_nonce = vec![0u8; key_len::<A>().max(nonce_len::<A>())];
        rng.fill_bytes(&mut response_nonce);
        let (cipher, nonce) = response_keys::<A>(&self.secret()?, &self.enc, &response_nonce);
        Ok((response_nonce, ChunkSealer { cipher, nonce, counter: 0 }))
    }
}

/// Seals the chunks of one response in order.
pub struct ChunkSealer<A: Aead> {
    cipher: A::AeadImpl,
    nonce: Vec<u8>,
    counter: u64,
}

impl<A: Aead> ChunkSealer<A> {
    /// A non-final chunk, framed: varint length || ciphertext.
    pub fn seal_chunk(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let sealed = aead_seal::<A>(&self.cipher, &chunk_nonce(&self.nonce, self.counter), b"", plaintext);
        self.counter += 1;
        let mut out = Vec::with_capacity(sealed.len() + 8);
        varint::encode(sealed.len() as u64, &mut out);
        out.extend_from_slice(&sealed);
        out
    }

    /// The final chunk: 0 || ciphertext sealed with AAD "final". Nothing may follow.
    pub fn seal_final(self, plaintext: &[u8]) -> Vec<u8> {
        let sealed = aead_seal::<A>(&self.cipher, &chunk_nonce(&self.nonce, self.counter), FINAL_CHUNK_AAD, plaintext);
        let mut out = Vec::with_capacity(sealed.len() + 1);
        varint::encode(0, &mut out);
        out.extend_from_slice(&sealed);
        out
    }
}

/// Opens an RFC 9458 encapsulated response.
pub struct ResponseOpener<A: Aead> {
    secret: Vec<u8>,
    enc: Vec<u8>,
    aead: core::marker::PhantomData<A>,
}

impl<A: Aead> ResponseOpener<A> {
    pub fn open(self, enc_response: &[u8]) -> Result<Vec<u8>, OhttpError> {
        let nonce_len = key_len::<A>().max(nonce_len::<A>());
        if enc_response.len() < nonce_len {
            return Err(OhttpError::Truncated);
        }
        let (response_nonce, sealed) = enc_response.split_at(nonce_len);
        let (cipher, nonce) = response_keys::<A>(&self.secret, &self.enc, response_nonce);
        aead_open::<A>(&cipher, &nonce, b"", sealed)
    }
}

/// Opens a chunked response incrementally: push bytes as they arrive, take
/// each opened chunk; [`finish`](Self::finish) at the end of the body opens
/// the final chunk.
pub struct ChunkedResponseOpener<A: Aead> {
    secret: Vec<u8>,
    enc: Vec<u8>,
    buffer: Vec<u8>,
    keys: Option<(A::AeadImpl, Vec<u8>)>,
    counter: u64,
    in_final: bool,
}

impl<A: Aead> ChunkedResponseOpener<A> {
    fn new(secret: Vec<u8>, enc: Vec<u8>) -> Self {
        Self { secret, enc, buffer: Vec::new(), keys: None, counter: 0, in_final: false }
    }

    /// Adds received bytes and returns every chunk that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, OhttpError> {
        self.buffer.extend_from_slice(bytes);
        let mut opened = Vec::new();
        if self.keys.is_none() {
            let nonce_len = key_len::<A>().max(nonce_len::<A>());
            if self.buffer.len() < nonce_len {
                return Ok(opened);
            }
            let response_nonce: Vec<u8> = self.buffer.drain(..nonce_len).collect();
            self.keys = Some(response_keys::<A>(&self.secret, &self.enc, &response_nonce));
        }
        while !self.in_final {
            let Some((len, used)) = varint::decode(&self.buffer) else { break };
            if len == 0 {
                self.buffer.drain(..used);
                self.in_final = true;
                break;
            }
            let len = usize::try_from(len).map_err(|_| OhttpError::Truncated)?;
            if self.buffer.len() < used + len {
                break;
            }
            let (cipher, nonce) = self.keys.as_ref().expect("keys derived above");
            let chunk = aead_open::<A>(cipher, &chunk_nonce(nonce, self.counter), b"", &self.buffer[used..used + len])?;
            self.counter += 1;
            self.buffer.drain(..used + len);
            opened.push(chunk);
        }
        Ok(opened)
    }

    /// Opens the final chunk once the body has ended. A body that ends
    /// before its final chunk is truncated.
    pub fn finish(self) -> Result<Vec<u8>, OhttpError> {
        let (Some((cipher, nonce)), true) = (self.keys.as_ref(), self.in_final) else {
            return Err(OhttpError::Truncated);
        };
        aead_open::<A>(cipher, &chunk_nonce(nonce, self.counter), FINAL_CHUNK_AAD, &self.buffer)
    }
}

/// Product-suite shorthands.
/// An encapsulated request's header, `enc` and sealed rest.
type RequestParts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

pub type ProductClientRequest = ClientRequest<ProductAead>;
pub type ProductResponseContext = ResponseContext<ProductAead>;
/// AES-128-GCM, used by the RFC 9458 example.
pub type Aes128 = AesGcm128;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use hpke::rand_core::{TryCryptoRng, TryRng};
    use std::convert::Infallible;

    /// Yields given bytes, then a counter pattern: deterministic test randomness.
    pub struct FixedRng {
        bytes: Vec<u8>,
        next: u8,
    }

    impl FixedRng {
        pub fn new(bytes: &[u8]) -> Self {
            Self { bytes: bytes.iter().rev().copied().collect(), next: 0 }
        }
    }

    impl TryRng for FixedRng {
        type Error = Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            let mut b = [0u8; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }
        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            let mut b = [0u8; 8];
            self.try_fill_bytes(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
            for d in dst {
                *d = self.bytes.pop().unwrap_or_else(|| {
                    self.next = self.next.wrapping_add(1);
                    self.next
                });
            }
            Ok(())
        }
    }

    impl TryCryptoRng for FixedRng {}
}

#[cfg(test)]
mod tests {
    use super::testing::FixedRng;
    use super::*;

    fn server() -> ServerKey {
        ServerKey::generate(7, &mut FixedRng::new(&[42; 32]))
    }

    #[test]
    fn key_config_round_trips() {
        let config = server().config();
        let bytes = config.encode();
        assert_eq!(bytes.len(), 1 + 2 + 32 + 2 + 4);
        assert_eq!(KeyConfig::decode(&bytes).unwrap(), config);
        assert!(KeyConfig::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(KeyConfig::decode(&[bytes.clone(), vec![0]].concat()).is_err());
    }

    #[test]
    fn chunked_request_and_response_round_trip() {
        let server = server();
        let mut rng = FixedRng::new(&[]);
        let (sealed, mut opener) =
            ProductClientRequest::seal_chunked(&server.config(), b"hello node", &mut rng).unwrap();
        let (request, ctx) = server.open_chunked_request::<ProductAead>(&sealed).unwrap();
        assert_eq!(request, b"hello node");

        let (prefix, mut sealer) = ctx.chunked(&mut rng).unwrap();
        let mut wire = prefix;
        wire.extend(sealer.seal_chunk(b"one"));
        wire.extend(sealer.seal_chunk(b"two"));
        wire.extend(sealer.seal_final(b"end"));

        // Delivered one byte at a time, the chunks still come out whole and in order.
        let mut chunks = Vec::new();
        for byte in &wire {
            chunks.extend(opener.push(std::slice::from_ref(byte)).unwrap());
        }
        assert_eq!(chunks, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(opener.finish().unwrap(), b"end");
    }

    #[test]
    fn tampering_truncation_and_wrong_keys_are_refused() {
        let server = server();
        let mut rng = FixedRng::new(&[]);
        let (sealed, _) = ProductClientRequest::seal_chunked(&server.config(), b"secret", &mut rng).unwrap();

        for i in [0usize, 8, 40, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(server.open_chunked_request::<ProductAead>(&bad).is_err(), "flip at {i} accepted");
        }
        for len in [0, 5, 39, 40, sealed.len() - 1] {
            assert!(server.open_chunked_request::<ProductAead>(&sealed[..len]).is_err(), "cut at {len} accepted");
        }
        let other = ServerKey::generate(7, &mut FixedRng::new(&[9; 32]));
        assert_eq!(other.open_chunked_request::<ProductAead>(&sealed).err(), Some(OhttpError::Open));
        let other_id = ServerKey::generate(8, &mut FixedRng::new(&[42; 32]));
        assert_eq!(other_id.open_chunked_request::<ProductAead>(&sealed).err(), Some(OhttpError::UnknownKey(7)));
    }

    /// A request sealed and opened, and its response started: (client's
    /// opener, response prefix, node's sealer).
    fn exchange() -> (ChunkedResponseOpener<ProductAead>, Vec<u8>, ChunkSealer<ProductAead>) {
        let server = server();
        let mut rng = FixedRng::new(&[]);
        let (sealed, opener) = ProductClientRequest::seal_chunked(&server.config(), b"q", &mut rng).unwrap();
        let (_, ctx) = server.open_chunked_request::<ProductAead>(&sealed).unwrap();
        let (prefix, sealer) = ctx.chunked(&mut rng).unwrap();
        (opener, prefix, sealer)
    }

    #[test]
    fn response_without_final_chunk_is_truncated() {
        let (mut opener, prefix, mut sealer) = exchange();
        let mut wire = prefix;
        wire.extend(sealer.seal_chunk(b"one"));
        assert_eq!(opener.push(&wire).unwrap(), vec![b"one".to_vec()]);
        assert_eq!(opener.finish().err(), Some(OhttpError::Truncated));
    }

    #[test]
    fn reordered_chunks_fail_to_open() {
        let (mut opener, prefix, mut sealer) = exchange();
        let first = sealer.seal_chunk(b"one");
        let second = sealer.seal_chunk(b"two");
        let wire = [prefix, second, first].concat();
        assert_eq!(opener.push(&wire).err(), Some(OhttpError::Open));
    }
}

//! Published test vectors, transcribed from the RFC texts.
//!
//! * RFC 9180 (HPKE), Appendix A.1.1:
//!   <https://www.rfc-editor.org/rfc/rfc9180#appendix-A.1.1>
//! * RFC 9458 (Oblivious HTTP), Appendix A:
//!   <https://www.rfc-editor.org/rfc/rfc9458#appendix-A>
//!
//! All values are lowercase hex, with lines that wrap in the RFC text joined.
//! Every value here was cross-checked by recomputing it (X25519, HPKE
//! key schedule, AES-128-GCM, HKDF) from the RFC's inputs.

#![allow(dead_code)]

// ---------------------------------------------------------------------------
// RFC 9180 Appendix A.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM
// A.1.1 Base Setup Information (mode: 0, kem_id: 32, kdf_id: 1, aead_id: 1)
// ---------------------------------------------------------------------------

/// RFC 9180 A.1.1 Base Setup Information: `ikmE`.
pub const RFC9180_A1_IKM_E: &str = "7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234";

/// RFC 9180 A.1.1 Base Setup Information: `pkEm`.
pub const RFC9180_A1_PK_EM: &str = "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431";

/// RFC 9180 A.1.1 Base Setup Information: `skEm`.
pub const RFC9180_A1_SK_EM: &str = "52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736";

/// RFC 9180 A.1.1 Base Setup Information: `ikmR`.
pub const RFC9180_A1_IKM_R: &str = "6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037";

/// RFC 9180 A.1.1 Base Setup Information: `pkRm`.
pub const RFC9180_A1_PK_RM: &str = "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d";

/// RFC 9180 A.1.1 Base Setup Information: `skRm`.
pub const RFC9180_A1_SK_RM: &str = "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8";

/// RFC 9180 A.1.1 Base Setup Information: `enc` (equal to `pkEm`).
pub const RFC9180_A1_ENC: &str = "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431";

/// RFC 9180 A.1.1 Base Setup Information: `shared_secret`.
pub const RFC9180_A1_SHARED_SECRET: &str = "fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc";

/// RFC 9180 A.1.1 Base Setup Information: `info` ("Ode on a Grecian Urn").
pub const RFC9180_A1_INFO: &str = "4f6465206f6e2061204772656369616e2055726e";

/// RFC 9180 A.1.1 Base Setup Information: `key_schedule_context`.
pub const RFC9180_A1_KEY_SCHEDULE_CONTEXT: &str = "00725611c9d98c07c03f60095cd32d400d8347d45ed67097bbad50fc56da742d07cb6cffde367bb0565ba28bb02c90744a20f5ef37f30523526106f637abb05449";

/// RFC 9180 A.1.1 Base Setup Information: `secret`.
pub const RFC9180_A1_SECRET: &str = "12fff91991e93b48de37e7daddb52981084bd8aa64289c3788471d9a9712f397";

/// RFC 9180 A.1.1 Base Setup Information: `key` (AES-128-GCM, 16 bytes).
pub const RFC9180_A1_KEY: &str = "4531685d41d65f03dc48f6b8302c05b0";

/// RFC 9180 A.1.1 Base Setup Information: `base_nonce` (12 bytes).
pub const RFC9180_A1_BASE_NONCE: &str = "56d890e5accaaf011cff4b7d";

/// RFC 9180 A.1.1 Base Setup Information: `exporter_secret`.
pub const RFC9180_A1_EXPORTER_SECRET: &str = "45ff1c2e220db587171952c0592d5f5ebe103f1561a2614e38f2ffd47e99e3f8";

/// RFC 9180 A.1.1.1 Encryptions, sequence numbers 0, 1 and 2, in order:
/// `(aad, pt, ct)`. pt is "Beauty is truth, truth beauty"; aad is "Count-<seq>".
pub const RFC9180_A1_ENCRYPTIONS: &[(&str /*aad*/, &str /*pt*/, &str /*ct*/)] = &[
    // sequence number: 0, nonce: 56d890e5accaaf011cff4b7d
    (
        "436f756e742d30",
        "4265617574792069732074727574682c20747275746820626561757479",
        "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a",
    ),
    // sequence number: 1, nonce: 56d890e5accaaf011cff4b7c
    (
        "436f756e742d31",
        "4265617574792069732074727574682c20747275746820626561757479",
        "af2d7e9ac9ae7e270f46ba1f975be53c09f8d875bdc8535458c2494e8a6eab251c03d0c22a56b8ca42c2063b84",
    ),
    // sequence number: 2, nonce: 56d890e5accaaf011cff4b7f
    (
        "436f756e742d32",
        "4265617574792069732074727574682c20747275746820626561757479",
        "498dfcabd92e8acedc281e85af1cb4e3e31c7dc394a1ca20e173cb72516491588d96a19ad4a683518973dcc180",
    ),
];

/// RFC 9180 A.1.1.2 Exported Values: `(exporter_context, L, exported_value)`.
/// The first exporter context is empty.
pub const RFC9180_A1_EXPORTS: &[(
    &str,  /*exporter_context hex*/
    usize, /*L*/
    &str,  /*exported_value*/
)] = &[
    ("", 32, "3853fe2b4035195a573ffc53856e77058e15d9ea064de3e59f4961d0095250ee"),
    ("00", 32, "2e8f0b54673c7029649d4eb9d5e33bf1872cf76d623ff164ac185da9e88c21a5"),
    ("54657374436f6e74657874", 32, "e9e43065102c3836401bed8c3c3c75ae46be1639869391d62c61f1ec7af54931"),
];

// ---------------------------------------------------------------------------
// RFC 9458 Appendix A: Complete Example of a Request and Response
//
// KEM: DHKEM(X25519, HKDF-SHA256) (0x0020). The key configuration offers
// (HKDF-SHA256, AES-128-GCM) = (0x0001, 0x0001) and
// (HKDF-SHA256, ChaCha20Poly1305) = (0x0001, 0x0003); the Client in the
// example selects HKDF-SHA256 and AES-128-GCM, which is what the request
// header (kdf 0x0001, aead 0x0001) and the response AEAD use.
// ---------------------------------------------------------------------------

/// RFC 9458 Appendix A: the Oblivious Gateway Resource's X25519 secret key.
pub const RFC9458_SK_R: &str = "3c168975674b2fa8e465970b79c8dcf09f1c741626480bd4c6162fc5b6a98e1a";

/// RFC 9458 Appendix A: the X25519 public key for `RFC9458_SK_R`. Not printed
/// on its own in the RFC; it is bytes 3..35 of `RFC9458_KEY_CONFIG`.
pub const RFC9458_PK_R: &str = "31e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e798155";

/// RFC 9458 Appendix A: the key configuration as printed: key id 0x01,
/// kem 0x0020, 32-byte public key, cipher suites length 0x0008,
/// suites (0x0001, 0x0001) and (0x0001, 0x0003).
pub const RFC9458_KEY_CONFIG: &str =
    "01002031e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e79815500080001000100010003";

/// RFC 9458 Appendix A: the request plaintext (binary HTTP, known-length
/// request `GET https://example.com/`).
pub const RFC9458_REQUEST: &str = "00034745540568747470730b6578616d706c652e636f6d012f";

/// RFC 9458 Appendix A: the Client's ephemeral secret key.
pub const RFC9458_SK_E: &str = "bc51d5e930bda26589890ac7032f70ad12e4ecb37abb1b65b1256c9c48999c73";

/// RFC 9458 Appendix A: the ephemeral public key (also the HPKE `enc`).
pub const RFC9458_PK_E: &str = "4b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b472";

/// RFC 9458 Appendix A: the HPKE info parameter,
/// "message/bhttp request" || 0x00 || header.
pub const RFC9458_INFO: &str = "6d6573736167652f626874747020726571756573740001002000010001";

/// RFC 9458 Appendix A: the request header (key id 0x01, kem 0x0020,
/// kdf 0x0001, aead 0x0001). Not printed on its own in the RFC; it is the
/// first 7 bytes of `RFC9458_ENC_REQUEST` and the last 7 bytes of
/// `RFC9458_INFO`.
pub const RFC9458_REQUEST_HEADER: &str = "01002000010001";

/// RFC 9458 Appendix A: the Encapsulated Request (header || enc || ct), 80 bytes
/// (7 + 32 + 25 + 16). The RFC's illustrative HTTP messages say
/// `Content-Length: 78`, which does not match the hex it prints.
pub const RFC9458_ENC_REQUEST: &str = "010020000100014b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b4726374e469135906992e1268c594d2a10c695d858c40a026e7965e7d86b83dd440b2c0185204b4d63525";

/// RFC 9458 Appendix A: the response plaintext (binary HTTP, known-length
/// response, status 200).
pub const RFC9458_RESPONSE: &str = "0140c8";

/// RFC 9458 Appendix A: the secret exported from the HPKE context
/// (16 bytes = max(Nn, Nk) for AES-128-GCM).
pub const RFC9458_RESPONSE_SECRET: &str = "62d87a6ba569ee81014c2641f52bea36";

/// RFC 9458 Appendix A: the response nonce (16 bytes = max(Nn, Nk)). Not
/// printed on its own in the RFC; it is the tail of `RFC9458_RESPONSE_SALT`
/// and the first 16 bytes of `RFC9458_ENC_RESPONSE`.
pub const RFC9458_RESPONSE_NONCE: &str = "c789e7151fcba46158ca84b04464910d";

/// RFC 9458 Appendix A: the salt, enc || response_nonce.
pub const RFC9458_RESPONSE_SALT: &str =
    "4b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b472c789e7151fcba46158ca84b04464910d";

/// RFC 9458 Appendix A: the pseudorandom key, HKDF-SHA256 Extract(salt, secret).
pub const RFC9458_RESPONSE_PRK: &str = "979aaeae066cf211ab407b31ae49767f344e1501e475c84e8aff547cc5a683db";

/// RFC 9458 Appendix A: the AES-128-GCM key for the response (Expand, info "key").
pub const RFC9458_RESPONSE_AEAD_KEY: &str = "5d0172a080e428b16d298c4ea0db620d";

/// RFC 9458 Appendix A: the AES-128-GCM nonce for the response (Expand, info "nonce").
pub const RFC9458_RESPONSE_AEAD_NONCE: &str = "f6bf1aeb88d6df87007fa263";

/// RFC 9458 Appendix A: the Encapsulated Response (response_nonce || ct), 35 bytes
/// (16 + 3 + 16). The RFC's illustrative HTTP message says
/// `Content-Length: 38`, which does not match the hex it prints.
pub const RFC9458_ENC_RESPONSE: &str = "c789e7151fcba46158ca84b04464910d86f9013e404feea014e7be4a441f234f857fbd";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ohttp::testing::FixedRng;
    use crate::ohttp::{ClientRequest, KeyConfig, ServerKey};
    use hpke::aead::AesGcm128;
    use hpke::kdf::HkdfSha256;
    use hpke::kem::X25519HkdfSha256;
    use hpke::{Kem, OpModeR, OpModeS, Serializable};

    fn h(text: &str) -> Vec<u8> {
        hex::decode(text).unwrap()
    }

    #[test]
    fn rfc9180_a1_base_mode() {
        let (sk_r, pk_r) = X25519HkdfSha256::derive_keypair(&h(RFC9180_A1_IKM_R));
        // The crate stores X25519 scalars clamped (RFC 7748 §5); the RFC prints them unclamped.
        let mut clamped = h(RFC9180_A1_SK_RM);
        clamped[0] &= 248;
        clamped[31] = (clamped[31] & 127) | 64;
        assert_eq!(sk_r.to_bytes().to_vec(), clamped);
        assert_eq!(pk_r.to_bytes().to_vec(), h(RFC9180_A1_PK_RM));

        // The ephemeral key is DeriveKeyPair(ikmE): feed ikmE as the randomness.
        let mut rng = FixedRng::new(&h(RFC9180_A1_IKM_E));
        let info = h(RFC9180_A1_INFO);
        let (enc, mut sender) = hpke::setup_sender_with_rng::<AesGcm128, HkdfSha256, X25519HkdfSha256>(
            &OpModeS::Base,
            &pk_r,
            &info,
            &mut rng,
        )
        .unwrap();
        assert_eq!(enc.to_bytes().to_vec(), h(RFC9180_A1_ENC));
        let mut receiver =
            hpke::setup_receiver::<AesGcm128, HkdfSha256, X25519HkdfSha256>(&OpModeR::Base, &sk_r, &enc, &info)
                .unwrap();

        for (aad, pt, ct) in RFC9180_A1_ENCRYPTIONS {
            assert_eq!(sender.seal(&h(pt), &h(aad)).unwrap(), h(ct));
            assert_eq!(receiver.open(&h(ct), &h(aad)).unwrap(), h(pt));
        }
        for (context, len, value) in RFC9180_A1_EXPORTS {
            let mut out = vec![0u8; *len];
            sender.export(&h(context), &mut out).unwrap();
            assert_eq!(out, h(value));
        }
    }

    #[test]
    fn rfc9458_appendix_a() {
        let server = ServerKey::from_secret(1, &h(RFC9458_SK_R)).unwrap();
        // The example's configuration offers AES-128-GCM and ChaCha20Poly1305.
        let config = server.config_with_suites(vec![(0x0001, 0x0001), (0x0001, 0x0003)]);
        assert_eq!(config.encode(), h(RFC9458_KEY_CONFIG));
        assert_eq!(KeyConfig::decode(&h(RFC9458_KEY_CONFIG)).unwrap(), config);

        let (request, context) = server.open_request::<AesGcm128>(&h(RFC9458_ENC_REQUEST)).unwrap();
        assert_eq!(request, h(RFC9458_REQUEST));
        let mut rng = FixedRng::new(&h(RFC9458_RESPONSE_NONCE));
        let response = context.seal_response(&h(RFC9458_RESPONSE), &mut rng).unwrap();
        assert_eq!(response, h(RFC9458_ENC_RESPONSE));

        // And our client's side interoperates with that server.
        let (sealed, opener) =
            ClientRequest::<AesGcm128>::seal(&config, &h(RFC9458_REQUEST), &mut FixedRng::new(&[])).unwrap();
        assert_eq!(&sealed[..7], &h(RFC9458_REQUEST_HEADER)[..]);
        let (request, context) = server.open_request::<AesGcm128>(&sealed).unwrap();
        assert_eq!(request, h(RFC9458_REQUEST));
        let response = context.seal_response(&h(RFC9458_RESPONSE), &mut FixedRng::new(&[])).unwrap();
        assert_eq!(opener.open(&response).unwrap(), h(RFC9458_RESPONSE));
    }
}

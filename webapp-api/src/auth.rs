//! Who is calling: mini-app users (Telegram initData), the bot acting for a
//! user (service token), admins (admin token or an admin's initData) and
//! registering providers (provider token).
//!
//! initData is checked as Telegram documents it: the HMAC-SHA-256 of the
//! sorted `key=value` lines under a key derived from the bot token with
//! the label `WebAppData`, compared in constant time, and `auth_date` no
//! older than the configured age. Nothing is stored between requests, so
//! any API instance can check any request.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::users::{self, TelegramUser, User};
use crate::{unix_ms, AppState};

/// Header through which the bot names the Telegram user it acts for.
pub const ACTING_USER_HEADER: &str = "x-chrysalis-user";
/// Longest initData accepted (Telegram's are a few hundred bytes).
pub const MAX_INIT_DATA_BYTES: usize = 4096;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InitDataError {
    #[error("initData is longer than {MAX_INIT_DATA_BYTES} bytes")]
    TooLong,
    #[error("initData is malformed: {0}")]
    Malformed(&'static str),
    #[error("initData's signature does not match (signed for another bot, or changed)")]
    BadSignature,
    #[error("initData has expired; reopen the mini-app")]
    Expired,
}

/// What a validated initData says.
#[derive(Debug, Clone)]
pub struct InitData {
    pub user: TelegramUser,
    /// Unix seconds when Telegram signed it.
    pub auth_date: u64,
}

/// Validates a mini-app's raw `initData` query string at time `now_secs`.
pub fn validate_init_data(
    raw: &str,
    bot_token: &str,
    max_age: Duration,
    now_secs: u64,
) -> Result<InitData, InitDataError> {
    if raw.len() > MAX_INIT_DATA_BYTES {
        return Err(InitDataError::TooLong);
    }
    let mut pairs: Vec<(String, String)> =
        form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    pairs.sort();
    if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(InitDataError::Malformed("a field appears twice"));
    }
    let hash_at = pairs.iter().position(|(k, _)| k == "hash").ok_or(InitDataError::Malformed("no hash"))?;
    let (_, hash) = pairs.remove(hash_at);
    let hash = hex::decode(hash).map_err(|_| InitDataError::Malformed("hash is not hex"))?;
    if signature(&pairs, bot_token).verify_slice(&hash).is_err() {
        return Err(InitDataError::BadSignature);
    }

    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let auth_date: u64 = field("auth_date")
        .and_then(|v| v.parse().ok())
        .ok_or(InitDataError::Malformed("auth_date is missing or not a number"))?;
    if now_secs.saturating_sub(auth_date) > max_age.as_secs() {
        return Err(InitDataError::Expired);
    }
    let user: TelegramUser = field("user")
        .and_then(|v| serde_json::from_str(v).ok())
        .ok_or(InitDataError::Malformed("user is missing or not a Telegram user"))?;
    if user.id <= 0 {
        return Err(InitDataError::Malformed("user id must be positive"));
    }
    Ok(InitData { user, auth_date })
}

/// The HMAC over `pairs` (sorted, without `hash`) that Telegram puts in `hash`.
fn signature(pairs: &[(String, String)], bot_token: &str) -> HmacSha256 {
    let data_check_string = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("\n");
    let mut secret = <HmacSha256 as KeyInit>::new_from_slice(b"WebAppData").expect("HMAC takes any key length");
    secret.update(bot_token.as_bytes());
    let secret = secret.finalize().into_bytes();
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&secret).expect("HMAC takes any key length");
    mac.update(data_check_string.as_bytes());
    mac
}

/// Signs `fields` as Telegram would for the bot with `bot_token`, giving a
/// raw initData string. For local development and tests, where no
/// Telegram client opens the mini-app.
pub fn sign_init_data(fields: &[(&str, &str)], bot_token: &str) -> String {
    let mut pairs: Vec<(String, String)> = fields.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect();
    pairs.sort();
    let hash = hex::encode(signature(&pairs, bot_token).finalize().into_bytes());
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        out.append_pair(k, v);
    }
    out.append_pair("hash", &hash);
    out.finish()
}

/// Compares secrets without leaking where they differ.
fn secret_matches(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes()).ct_eq(&Sha256::digest(expected.as_bytes())).into()
}

enum Credential<'a> {
    InitData(&'a str),
    Bearer(&'a str),
}

fn credential(headers: &HeaderMap) -> Result<Credential<'_>, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("sign in: send Authorization: tma <initData> or Bearer <token>"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    if let Some(init_data) = value.strip_prefix("tma ") {
        Ok(Credential::InitData(init_data))
    } else if let Some(token) = value.strip_prefix("Bearer ") {
        Ok(Credential::Bearer(token))
    } else {
        Err(ApiError::unauthorized("the Authorization scheme must be tma or Bearer"))
    }
}

fn check_init_data(state: &AppState, raw: &str) -> Result<InitData, ApiError> {
    let bot_token = state
        .settings
        .bot_token
        .as_deref()
        .ok_or_else(|| ApiError::unauthorized("mini-app sign-in is off: the platform has no bot token"))?;
    let now = u64::try_from(unix_ms() / 1000).unwrap_or_default();
    validate_init_data(raw, bot_token, state.settings.init_data_max_age, now)
        .map_err(|e| ApiError::unauthorized(e.to_string()))
}

/// A signed-in user who is not banned: a mini-app user, or the bot acting
/// for one.
pub struct Caller(pub User);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = match credential(&parts.headers)? {
            Credential::InitData(raw) => {
                let init_data = check_init_data(state, raw)?;
                users::upsert(&state.db, &init_data.user).await?
            }
            Credential::Bearer(token) => {
                let service = state.settings.service_token.as_deref();
                if !service.is_some_and(|expected| secret_matches(token, expected)) {
                    return Err(ApiError::unauthorized("unknown token"));
                }
                let id: i64 = parts
                    .headers
                    .get(ACTING_USER_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .filter(|&id| id > 0)
                    .ok_or_else(|| {
                        ApiError::invalid(format!("the service token acts for a user named by {ACTING_USER_HEADER}"))
                    })?;
                users::touch(&state.db, id).await?
            }
        };
        if user.banned {
            return Err(ApiError::forbidden("this account is banned"));
        }
        Ok(Caller(user))
    }
}

/// An admin: the admin token, or initData of a Telegram id on the admin list.
pub struct Admin {
    /// Who, for the audit log: `token` or `telegram:<id>`.
    pub who: String,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match credential(&parts.headers)? {
            Credential::Bearer(token) => {
                let admin = state.settings.admin_token.as_deref();
                if admin.is_some_and(|expected| secret_matches(token, expected)) {
                    Ok(Admin { who: "token".into() })
                } else {
                    Err(ApiError::unauthorized("unknown token"))
                }
            }
            Credential::InitData(raw) => {
                let init_data = check_init_data(state, raw)?;
                if state.settings.admin_ids.contains(&init_data.user.id) {
                    Ok(Admin { who: format!("telegram:{}", init_data.user.id) })
                } else {
                    Err(ApiError::forbidden("this Telegram account is not an admin"))
                }
            }
        }
    }
}

/// A node allowed to register: anyone when no provider token is set
/// (development), else the bearer of it.
pub struct ProviderAuth;

impl FromRequestParts<AppState> for ProviderAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = state.settings.provider_token.as_deref() else { return Ok(ProviderAuth) };
        match credential(&parts.headers)? {
            Credential::Bearer(token) if secret_matches(token, expected) => Ok(ProviderAuth),
            _ => Err(ApiError::unauthorized("registering a provider takes the provider token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456:TEST-bot-token";
    const NOW: u64 = 1_790_000_000;
    const DAY: Duration = Duration::from_secs(86_400);

    fn signed(auth_date: u64) -> String {
        let date = auth_date.to_string();
        let user = r#"{"id":42,"first_name":"Ada","username":"ada","language_code":"en"}"#;
        sign_init_data(&[("query_id", "AAE"), ("user", user), ("auth_date", &date)], TOKEN)
    }

    #[test]
    fn accepts_a_correctly_signed_payload() {
        let data = validate_init_data(&signed(NOW - 60), TOKEN, DAY, NOW).unwrap();
        assert_eq!(data.user.id, 42);
        assert_eq!(data.user.username, "ada");
        assert_eq!(data.auth_date, NOW - 60);
    }

    #[test]
    fn checks_telegrams_published_algorithm() {
        // Computed independently: HMAC_SHA256(HMAC_SHA256("WebAppData", token), "auth_date=1\nuser={\"id\":1}").
        let secret = {
            let mut m = <HmacSha256 as KeyInit>::new_from_slice(b"WebAppData").unwrap();
            m.update(b"t");
            m.finalize().into_bytes()
        };
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&secret).unwrap();
        m.update(b"auth_date=1\nuser={\"id\":1}");
        let hash = hex::encode(m.finalize().into_bytes());
        let raw = format!("user=%7B%22id%22%3A1%7D&hash={hash}&auth_date=1");
        assert!(validate_init_data(&raw, "t", DAY, 2).is_ok());
    }

    #[test]
    fn refuses_a_changed_field() {
        let raw = signed(NOW).replace("ada", "eve");
        assert_eq!(validate_init_data(&raw, TOKEN, DAY, NOW).unwrap_err(), InitDataError::BadSignature);
        let raw = signed(NOW).replace("query_id=AAE", "query_id=AAF");
        assert_eq!(validate_init_data(&raw, TOKEN, DAY, NOW).unwrap_err(), InitDataError::BadSignature);
    }

    #[test]
    fn refuses_another_bots_token() {
        assert_eq!(
            validate_init_data(&signed(NOW), "654321:OTHER", DAY, NOW).unwrap_err(),
            InitDataError::BadSignature
        );
    }

    #[test]
    fn refuses_an_expired_auth_date() {
        let raw = signed(NOW - DAY.as_secs() - 1);
        assert_eq!(validate_init_data(&raw, TOKEN, DAY, NOW).unwrap_err(), InitDataError::Expired);
    }

    #[test]
    fn refuses_malformed_payloads() {
        for raw in ["", "auth_date=1", "hash=zz&auth_date=1", &format!("{}&auth_date=2", signed(NOW))] {
            assert!(matches!(validate_init_data(raw, TOKEN, DAY, NOW), Err(InitDataError::Malformed(_))), "{raw}");
        }
        assert_eq!(validate_init_data(&"a".repeat(5000), TOKEN, DAY, NOW).unwrap_err(), InitDataError::TooLong);
    }

    #[test]
    fn a_signed_payload_without_a_user_is_refused() {
        let raw = sign_init_data(&[("auth_date", &NOW.to_string())], TOKEN);
        assert!(matches!(validate_init_data(&raw, TOKEN, DAY, NOW), Err(InitDataError::Malformed(_))));
    }
}

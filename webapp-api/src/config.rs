//! The platform's command line; every flag can also come from a
//! `CHRYSALIS_API_*` environment variable (the database URL from
//! `DATABASE_URL`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrysalis_protocol::attestation::Policy;
use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "chrysalis-api",
    version,
    about = "Chrysalis platform API: accounts, nanoTON ledger, provider registry and the sealed chat relay"
)]
pub struct ApiArgs {
    /// Address and port to listen on.
    #[arg(long, env = "CHRYSALIS_API_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Directory for the embedded database.
    #[arg(long, env = "CHRYSALIS_API_DATA_DIR", default_value = ".data")]
    pub data_dir: PathBuf,

    /// sqlite://PATH or postgres://USER@HOST/DB [default: a SQLite file in the data directory].
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// The Telegram bot's token: mini-app initData is checked against it.
    #[arg(long, env = "CHRYSALIS_API_BOT_TOKEN", hide_env_values = true)]
    pub bot_token: Option<String>,

    /// Token the bot presents to act for users.
    #[arg(long, env = "CHRYSALIS_API_SERVICE_TOKEN", hide_env_values = true)]
    pub service_token: Option<String>,

    /// Token that opens the admin API.
    #[arg(long, env = "CHRYSALIS_API_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Telegram user ids of admins (comma-separated); they sign in with initData.
    #[arg(long, env = "CHRYSALIS_API_ADMIN_IDS", value_delimiter = ',')]
    pub admin_ids: Vec<i64>,

    /// Token nodes present to register [default: none, anyone may register; development only].
    #[arg(long, env = "CHRYSALIS_API_PROVIDER_TOKEN", hide_env_values = true)]
    pub provider_token: Option<String>,

    /// Oldest initData accepted, in seconds.
    #[arg(long, env = "CHRYSALIS_API_INIT_DATA_MAX_AGE_SECS", default_value_t = 86_400)]
    pub init_data_max_age_secs: u64,

    /// Platform commission in basis points of each chat's price (1000 = 10%).
    #[arg(long, env = "CHRYSALIS_API_COMMISSION_BPS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub commission_bps: u32,

    /// Accept providers outside any TEE (tee: none). Development only.
    #[arg(long, env = "CHRYSALIS_API_ALLOW_UNATTESTED", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub allow_unattested: bool,

    /// SHA-256 of the model files providers may serve (comma-separated hex) [default: any].
    #[arg(long, env = "CHRYSALIS_API_ALLOWED_MODELS", value_delimiter = ',', value_parser = parse_sha256)]
    pub allowed_models: Vec<[u8; 32]>,

    /// Seconds between health checks of every provider.
    #[arg(long, env = "CHRYSALIS_API_HEALTH_INTERVAL_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub health_interval_secs: u64,

    /// Token budget (prompt plus answer) of a chat that names none.
    #[arg(long, env = "CHRYSALIS_API_DEFAULT_MAX_TOKENS", default_value_t = 1024)]
    pub default_max_tokens: u32,

    /// Largest token budget a chat may ask for.
    #[arg(long, env = "CHRYSALIS_API_MAX_TOKENS_LIMIT", default_value_t = 8192)]
    pub max_tokens_limit: u32,

    /// Largest request body in bytes (a chat carries its sealed copies).
    #[arg(long, env = "CHRYSALIS_API_MAX_BODY_BYTES", default_value_t = 4 << 20)]
    pub max_body_bytes: usize,

    /// Chats a user may start per minute.
    #[arg(long, env = "CHRYSALIS_API_CHATS_PER_MINUTE", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub chats_per_minute: u32,

    /// TON address deposits go to; top-ups are off without it.
    #[arg(long, env = "CHRYSALIS_API_DEPOSIT_ADDRESS")]
    pub deposit_address: Option<String>,

    /// Holds older than this many seconds are released (their relay died).
    /// A chat may stream for three quarters of it, so a live relay always
    /// settles first.
    #[arg(long, env = "CHRYSALIS_API_STALE_HOLD_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(4..))]
    pub stale_hold_secs: u64,
}

fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    hex::decode(text.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| format!("{text:?} is not a SHA-256 in hex (64 digits)"))
}

/// The settings handlers read, checked once at start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bot_token: Option<String>,
    pub service_token: Option<String>,
    pub admin_token: Option<String>,
    pub admin_ids: Vec<i64>,
    pub provider_token: Option<String>,
    pub init_data_max_age: Duration,
    pub commission_bps: u32,
    pub policy: Policy,
    pub health_interval: Duration,
    pub default_max_tokens: u32,
    pub max_tokens_limit: u32,
    pub max_body_bytes: usize,
    pub chats_per_minute: u32,
    pub deposit_address: Option<String>,
    pub stale_hold: Duration,
}

impl Settings {
    /// How long one chat may stream before the relay gives up on it: three
    /// quarters of the stale-hold age, leaving a quarter to settle.
    pub fn longest_chat(&self) -> Duration {
        self.stale_hold * 3 / 4
    }
}

impl ApiArgs {
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| crate::db::default_url(&self.data_dir))
    }

    pub fn settings(&self) -> anyhow::Result<Settings> {
        let non_empty = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
        anyhow::ensure!(self.default_max_tokens > 0, "--default-max-tokens must be positive");
        anyhow::ensure!(
            self.default_max_tokens <= self.max_tokens_limit,
            "--default-max-tokens ({}) exceeds --max-tokens-limit ({})",
            self.default_max_tokens,
            self.max_tokens_limit
        );
        Ok(Settings {
            bot_token: non_empty(&self.bot_token),
            service_token: non_empty(&self.service_token),
            admin_token: non_empty(&self.admin_token),
            admin_ids: self.admin_ids.clone(),
            provider_token: non_empty(&self.provider_token),
            init_data_max_age: Duration::from_secs(self.init_data_max_age_secs),
            commission_bps: self.commission_bps,
            policy: Policy { allow_unattested: self.allow_unattested, allowed_models: self.allowed_models.clone() },
            health_interval: Duration::from_secs(self.health_interval_secs),
            default_max_tokens: self.default_max_tokens,
            max_tokens_limit: self.max_tokens_limit,
            max_body_bytes: self.max_body_bytes,
            chats_per_minute: self.chats_per_minute,
            deposit_address: non_empty(&self.deposit_address),
            stale_hold: Duration::from_secs(self.stale_hold_secs),
        })
    }
}

//! A real platform (in this process, on SQLite or PostgreSQL) in front of a
//! real node on the real model, plus a proxy that breaks a node's answers
//! in the ways nodes fail.

#![allow(dead_code)]

pub mod proxy;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrysalis_api::config::ApiArgs;
use chrysalis_api::db::Db;
use chrysalis_api::AppState;
use chrysalis_client::{PlatformClient, ProviderListing};
use chrysalis_inference::config::NodeArgs;
use chrysalis_protocol::attestation::{AttestationDocument, Policy, VerifiedNode};
use chrysalis_protocol::money::{NanoTon, Prices};
use chrysalis_protocol::registry::ProviderRegistration;
use clap::Parser;
use serde_json::{json, Value};
use sqlx::AssertSqlSafe;
use tokio::sync::oneshot;

pub const BOT_TOKEN: &str = "7000001:platform-test-bot";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const SERVICE_TOKEN: &str = "test-service-token";
/// 1 TON per million tokens: 1000 nanoTON a token.
pub const PRICE_PER_MILLION: u64 = 1_000_000_000;
pub const PRICE_PER_TOKEN: i64 = 1000;
pub const COMMISSION_BPS: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Postgres,
}

/// Everything logged at debug level from the first call on, for the privacy
/// checks. Only tests that read logs install it: formatting every debug line
/// slows the platform down.
pub fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .try_init();
        logs
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn model_path() -> PathBuf {
    let path = std::env::var_os("CHRYSALIS_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(path.is_file(), "test model {} is missing: run scripts/fetch-model", path.display());
    path
}

/// Starts a node on its own thread; `extra` adds flags.
pub fn start_node(parallel: u32, ctx_size: u32, extra: &[String]) -> String {
    let mut flags = vec![
        "chrysalis-node".to_owned(),
        format!("--model={}", model_path().display()),
        "--model-id=test-model".to_owned(),
        "--listen=127.0.0.1:0".to_owned(),
        format!("--parallel={parallel}"),
        format!("--ctx-size={ctx_size}"),
        "--queue=64".to_owned(),
    ];
    flags.extend_from_slice(extra);
    let addr = chrysalis_inference::spawn(NodeArgs::parse_from(flags)).expect("node starts on the test model");
    format!("http://{addr}")
}

/// The node the tests of a binary share: 4 slots of 1024 tokens.
pub fn shared_node() -> &'static str {
    static NODE: OnceLock<String> = OnceLock::new();
    NODE.get_or_init(|| start_node(4, 1024, &[]))
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(300)).build().unwrap()
}

fn unique_name() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("chrysalis_test_{}_{nanos}", std::process::id())
}

/// A database for one test: a new SQLite file, or a new PostgreSQL
/// database on the server `scripts/test` starts.
async fn database_url(database: Database) -> (String, Option<PathBuf>) {
    match database {
        Database::Sqlite => {
            let dir = std::env::temp_dir().join(unique_name());
            let file = dir.join("platform.db");
            (format!("sqlite://{}", file.display()), Some(dir))
        }
        Database::Postgres => {
            let server = std::env::var("CHRYSALIS_TEST_POSTGRES_URL").expect(
                "CHRYSALIS_TEST_POSTGRES_URL is not set: run the tests through scripts/test, which starts PostgreSQL",
            );
            sqlx::any::install_default_drivers();
            let admin = sqlx::AnyPool::connect(&server).await.expect("connecting to the test PostgreSQL server");
            let name = unique_name();
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
            admin.close().await;
            let base = server.rsplit_once('/').map_or(server.as_str(), |(base, _)| base);
            (format!("{base}/{name}"), None)
        }
    }
}

pub struct Platform {
    pub url: String,
    pub state: AppState,
    pub database: Database,
    pub database_url: String,
    /// The SQLite file's directory (removed when the platform stops).
    pub sqlite_dir: Option<PathBuf>,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Platform {
    pub async fn start(database: Database) -> Platform {
        Self::start_with(database, &[]).await
    }

    /// Starts a platform with the test settings plus `extra` flags.
    pub async fn start_with(database: Database, extra: &[&str]) -> Platform {
        let (test_url, sqlite_dir) = database_url(database).await;
        let mut flags = vec![
            "chrysalis-api".to_owned(),
            format!("--database-url={test_url}"),
            format!("--bot-token={BOT_TOKEN}"),
            format!("--admin-token={ADMIN_TOKEN}"),
            format!("--service-token={SERVICE_TOKEN}"),
            "--admin-ids=900".to_owned(),
            format!("--commission-bps={COMMISSION_BPS}"),
            "--allow-unattested".to_owned(),
            "--chats-per-minute=1000".to_owned(),
            "--deposit-address=EQD_test_deposit_address".to_owned(),
        ];
        // A flag in `extra` replaces the default of the same name.
        let name = |flag: &str| flag.split('=').next().unwrap_or_default().to_owned();
        flags.retain(|flag| !extra.iter().any(|e| name(e) == name(flag)));
        flags.extend(extra.iter().map(|s| s.to_string()));
        let args = ApiArgs::parse_from(flags);
        let url = args.database_url();
        let db = Db::connect(&url).await.expect("database opens");
        let state = AppState::new(db, args.settings().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (shutdown, stop) = oneshot::channel::<()>();
        let served = tokio::spawn(chrysalis_api::serve(listener, state.clone(), async {
            let _ = stop.await;
        }));
        Platform {
            url: format!("http://{address}"),
            state,
            database,
            database_url: url,
            sqlite_dir,
            shutdown: Some(shutdown),
            served: Some(served),
        }
    }

    /// Shuts down gracefully: open streams finish, relays settle.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.unwrap().unwrap();
        }
    }

    /// A mini-app `Authorization` value for Telegram user `id`, signed now.
    pub fn user_auth(&self, id: i64) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
        let user = json!({"id": id, "first_name": format!("User{id}"), "username": format!("user{id}"), "language_code": "en"});
        let raw = chrysalis_api::auth::sign_init_data(
            &[("auth_date", &now), ("query_id", "AAHtest"), ("user", &user.to_string())],
            BOT_TOKEN,
        );
        format!("tma {raw}")
    }

    /// Signs user `id` in (creating the account) and credits `amount` nanoTON.
    pub async fn funded_user(&self, id: i64, amount: i64) -> String {
        let auth = self.user_auth(id);
        let me = http().get(format!("{}/api/me", self.url)).header("authorization", &auth).send().await.unwrap();
        assert_eq!(me.status(), 200, "{}", me.text().await.unwrap());
        if amount > 0 {
            let credited = self
                .admin_post(
                    &format!("/api/admin/users/{id}/credit"),
                    json!({"amount": amount.to_string(), "reason": "test funds"}),
                )
                .await;
            assert_eq!(credited["balance"], amount.to_string());
        }
        auth
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let response = http().get(format!("{}{path}", self.url)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}: {}", response.text().await.unwrap());
        response.json().await.unwrap()
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Value {
        let response =
            http().post(format!("{}{path}", self.url)).bearer_auth(ADMIN_TOKEN).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}: {}", response.text().await.unwrap());
        response.json().await.unwrap()
    }

    /// Registers the node at `node_url` through the registration endpoint.
    pub async fn register(&self, node_url: &str) -> i64 {
        let registration = registration(node_url).await;
        let response =
            http().post(format!("{}/api/providers/register", self.url)).json(&registration).send().await.unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        response.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    /// GETs a user endpoint as the user `auth` signs in.
    pub async fn user_get(&self, path: &str, auth: &str) -> Value {
        let response = http().get(format!("{}{path}", self.url)).header("authorization", auth).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}: {}", response.text().await.unwrap());
        response.json().await.unwrap()
    }

    /// (available, held) nanoTON of a user.
    pub async fn balance(&self, auth: &str) -> (i64, i64) {
        let body = self.user_get("/api/balance", auth).await;
        (body["available"].as_str().unwrap().parse().unwrap(), body["held"].as_str().unwrap().parse().unwrap())
    }

    pub async fn assert_invariants(&self) {
        let report = self.admin_get("/api/admin/ledger/check").await;
        assert_eq!(report["ok"], true, "ledger invariants: {report}");
    }

    pub fn client(&self, auth: &str) -> PlatformClient {
        PlatformClient::new(&self.url, auth)
    }

    /// The listed providers, verified against a development policy.
    pub async fn verified_providers(&self, auth: &str) -> Vec<(ProviderListing, VerifiedNode)> {
        let policy = Policy { allow_unattested: true, ..Policy::default() };
        let listed = self.client(auth).providers().await.unwrap();
        listed
            .into_iter()
            .map(|p| {
                let node = p.attestation.verify(&policy).unwrap();
                (p, node)
            })
            .collect()
    }

    /// Everything the database holds, as bytes: the SQLite files, or a
    /// `pg_dump` of the PostgreSQL database.
    pub fn stored_bytes(&self) -> Vec<u8> {
        match &self.sqlite_dir {
            Some(dir) => std::fs::read_dir(dir)
                .unwrap()
                .flat_map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
                .collect(),
            None => {
                let dump =
                    std::process::Command::new("pg_dump").arg(&self.database_url).output().expect("pg_dump runs");
                assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
                dump.stdout
            }
        }
    }

    /// One row of `chat_requests`, newest first, as JSON.
    pub async fn last_chat(&self) -> Value {
        use sqlx::Row;
        let row = sqlx::query(
            "SELECT state, outcome, attempts, provider_id, prompt_tokens, completion_tokens, price, commission, hold_amount \
             FROM chat_requests ORDER BY id DESC LIMIT 1",
        )
        .fetch_one(self.state.db.pool())
        .await
        .unwrap();
        json!({
            "state": row.get::<String, _>("state"),
            "outcome": row.get::<String, _>("outcome"),
            "attempts": row.get::<i64, _>("attempts"),
            "provider_id": row.get::<Option<i64>, _>("provider_id"),
            "prompt_tokens": row.get::<i64, _>("prompt_tokens"),
            "completion_tokens": row.get::<i64, _>("completion_tokens"),
            "price": row.get::<i64, _>("price"),
            "commission": row.get::<i64, _>("commission"),
            "hold_amount": row.get::<i64, _>("hold_amount"),
        })
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(dir) = &self.sqlite_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// What the node at `node_url` would register with, at the test prices.
pub async fn registration(node_url: &str) -> ProviderRegistration {
    let document: AttestationDocument =
        http().get(format!("{node_url}/v1/attestation")).send().await.unwrap().json().await.unwrap();
    ProviderRegistration {
        url: node_url.to_owned(),
        model: "test-model".into(),
        prices: Prices {
            prompt_per_million: NanoTon(PRICE_PER_MILLION),
            completion_per_million: NanoTon(PRICE_PER_MILLION),
        },
        attestation: document,
        payout_address: None,
    }
}

/// A greedy chat that runs to its token budget (so its price is exact).
pub fn budget_filling_chat(prompt: &str) -> Value {
    json!({
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": 4000,
        "ignore_eos": true,
    })
}

pub fn greedy_chat(prompt: &str, max_tokens: u32) -> Value {
    json!({ "messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": max_tokens })
}

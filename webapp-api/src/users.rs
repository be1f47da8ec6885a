//! Users: Telegram accounts as the platform knows them.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::{flag, Db};
use crate::unix_ms;

/// Who a Telegram client says the user is (from initData or the bot).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct TelegramUser {
    pub id: i64,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub language_code: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub first_name: String,
    pub last_name: String,
    pub username: String,
    pub language: String,
    pub banned: bool,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// The columns `from_row` reads (a macro, so queries stay `&'static str`).
macro_rules! user_columns {
    () => {
        "id, first_name, last_name, username, language, banned, created_at, last_seen_at"
    };
}

fn from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        username: row.try_get("username")?,
        language: row.try_get("language")?,
        banned: flag(row, "banned")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
    })
}

/// How stale `last_seen_at` may get: a signed-in request writes to the
/// database only when the user is new, renamed, or not seen for this long.
const LAST_SEEN_PRECISION_MS: i64 = 60_000;

/// Creates the user on first sight, refreshes names and last-seen time after.
pub async fn upsert(db: &Db, user: &TelegramUser) -> Result<User, sqlx::Error> {
    let now = unix_ms();
    if let Some(known) = get(db, user.id).await? {
        let same_names = (&known.first_name, &known.last_name, &known.username, &known.language)
            == (&user.first_name, &user.last_name, &user.username, &user.language_code);
        if same_names && now - known.last_seen_at < LAST_SEEN_PRECISION_MS {
            return Ok(known);
        }
    }
    let row = sqlx::query(concat!(
        "INSERT INTO users (id, first_name, last_name, username, language, created_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) \
         ON CONFLICT (id) DO UPDATE SET first_name = excluded.first_name, last_name = excluded.last_name, \
         username = excluded.username, language = excluded.language, last_seen_at = excluded.last_seen_at \
         RETURNING ",
        user_columns!()
    ))
    .bind(user.id)
    .bind(&user.first_name)
    .bind(&user.last_name)
    .bind(&user.username)
    .bind(&user.language_code)
    .bind(now)
    .fetch_one(db.pool())
    .await?;
    from_row(&row)
}

/// Creates a user known only by id (the bot acting for them) or touches it.
pub async fn touch(db: &Db, id: i64) -> Result<User, sqlx::Error> {
    if let Some(known) = get(db, id).await?.filter(|u| unix_ms() - u.last_seen_at < LAST_SEEN_PRECISION_MS) {
        return Ok(known);
    }
    let row = sqlx::query(concat!(
        "INSERT INTO users (id, created_at, last_seen_at) VALUES ($1, $2, $2) \
         ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at \
         RETURNING ",
        user_columns!()
    ))
    .bind(id)
    .bind(unix_ms())
    .fetch_one(db.pool())
    .await?;
    from_row(&row)
}

pub async fn get(db: &Db, id: i64) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Users whose id equals `query` or whose username or names contain it.
pub async fn search(db: &Db, query: &str, limit: i64) -> Result<Vec<User>, sqlx::Error> {
    let pattern = format!("%{}%", query.to_lowercase().replace(['%', '_'], ""));
    let id: i64 = query.trim().parse().unwrap_or(i64::MIN);
    let rows = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users \
         WHERE id = $1 OR LOWER(username) LIKE $2 OR LOWER(first_name) LIKE $2 OR LOWER(last_name) LIKE $2 \
         ORDER BY last_seen_at DESC LIMIT $3",
    ))
    .bind(id)
    .bind(pattern)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Sets the banned flag; `false` if there is no such user.
pub async fn set_banned(db: &Db, id: i64, banned: bool) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE users SET banned = $1 WHERE id = $2")
        .bind(i64::from(banned))
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

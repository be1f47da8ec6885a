-- The platform's tables. Times are Unix milliseconds, money is nanoTON in
-- BIGINT, flags are 0/1 BIGINT: the same queries run on SQLite and
-- PostgreSQL. This file and migrations/postgres/0001_platform.sql differ
-- only in how an id column is generated.

CREATE TABLE users (
    id BIGINT PRIMARY KEY,                  -- the Telegram user id
    first_name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    username TEXT NOT NULL DEFAULT '',
    language TEXT NOT NULL DEFAULT '',
    banned BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX users_by_username ON users (username);

-- One row per ledger account; `balance` caches the sum of its postings.
-- Only the outside world's accounts (deposits, adjustments) go negative.
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,                     -- user | hold | provider | fees | deposits | adjustments
    owner_id BIGINT NOT NULL,               -- user id, provider id, or 0
    balance BIGINT NOT NULL DEFAULT 0,
    UNIQUE (kind, owner_id),
    CHECK (kind IN ('deposits', 'adjustments') OR balance >= 0)
);

CREATE TABLE ledger_transactions (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,                     -- hold | capture | release | credit | deposit
    reference TEXT NOT NULL,                -- chat request id, deposit memo, ...
    note TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

-- Postings come in pairs that sum to zero; a transaction holds one or more pairs.
CREATE TABLE postings (
    id INTEGER PRIMARY KEY,
    transaction_id BIGINT NOT NULL REFERENCES ledger_transactions (id),
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    amount BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX postings_by_account ON postings (account_id, id);
CREATE INDEX postings_by_transaction ON postings (transaction_id);

CREATE TABLE providers (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    attestation TEXT NOT NULL,              -- the attestation document, JSON
    tee TEXT NOT NULL,
    prompt_price BIGINT NOT NULL,           -- nanoTON per million tokens
    completion_price BIGINT NOT NULL,
    payout_address TEXT NOT NULL DEFAULT '',
    enabled BIGINT NOT NULL DEFAULT 1,
    healthy BIGINT NOT NULL DEFAULT 1,
    health_error TEXT NOT NULL DEFAULT '',
    checked_at BIGINT NOT NULL DEFAULT 0,
    success_rate DOUBLE PRECISION NOT NULL DEFAULT 1,
    ttft_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
    tokens_per_second DOUBLE PRECISION NOT NULL DEFAULT 0,
    registered_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One row per relayed chat: sizes, tokens and money, never content.
CREATE TABLE chat_requests (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,        -- 32 hex digits, as in the receipt
    user_id BIGINT NOT NULL REFERENCES users (id),
    provider_id BIGINT REFERENCES providers (id),
    token_budget BIGINT NOT NULL,
    hold_amount BIGINT NOT NULL,
    state TEXT NOT NULL,                    -- held | settled | released
    outcome TEXT NOT NULL DEFAULT '',
    attempts BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    price BIGINT NOT NULL DEFAULT 0,
    commission BIGINT NOT NULL DEFAULT 0,
    ttft_ms BIGINT,
    duration_ms BIGINT,
    created_at BIGINT NOT NULL,
    settled_at BIGINT
);
CREATE INDEX chat_requests_by_user ON chat_requests (user_id, id);
CREATE INDEX chat_requests_by_state ON chat_requests (state, created_at);
CREATE INDEX chat_requests_by_provider ON chat_requests (provider_id, created_at);
CREATE INDEX chat_requests_by_time ON chat_requests (created_at);

-- A top-up in progress: the memo a deposit must carry to reach the user.
CREATE TABLE topup_intents (
    id INTEGER PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    memo TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

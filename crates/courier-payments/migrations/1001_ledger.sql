-- The payments ledger. Portable across SQLite and PostgreSQL (one migration set for both); versions start at
-- 1001 so they never collide with the user service's in the shared _sqlx_migrations table.
-- Money is BIGINT minor units; times are microseconds since the Unix epoch; enums are proto enum numbers.

-- One row. Every writing transaction updates it first: on PostgreSQL the row lock orders writers across processes,
-- so event sequence numbers are gap-free and commit in sequence order (a watcher never skips a late commit).
CREATE TABLE ledger_meta (
    id            BIGINT PRIMARY KEY,
    last_sequence BIGINT NOT NULL
);
INSERT INTO ledger_meta (id, last_sequence) VALUES (1, 0);

CREATE TABLE accounts (
    id             TEXT PRIMARY KEY,
    owner_user_id  TEXT NOT NULL,
    currency       TEXT NOT NULL,
    credit_limit   BIGINT NOT NULL,
    posted_balance BIGINT NOT NULL,
    held_amount    BIGINT NOT NULL,
    status         BIGINT NOT NULL,
    created_at_us  BIGINT NOT NULL,
    updated_at_us  BIGINT NOT NULL
);

CREATE TABLE authorizations (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    merchant_id     TEXT NOT NULL,
    amount          BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    decision        BIGINT NOT NULL,
    response_code   TEXT NOT NULL,
    decline_reason  BIGINT NOT NULL,
    status          BIGINT NOT NULL,
    held_amount     BIGINT NOT NULL,
    captured_amount BIGINT NOT NULL,
    available_after BIGINT NOT NULL,
    description     TEXT NOT NULL,
    metadata_json   TEXT NOT NULL,
    created_at_us   BIGINT NOT NULL,
    expires_at_us   BIGINT,
    resolved_at_us  BIGINT
);
-- The sweeper finds open holds past expiry; listings filter by account or merchant in id order.
CREATE INDEX authorizations_open ON authorizations (status, expires_at_us);
CREATE INDEX authorizations_account ON authorizations (account_id, id);
CREATE INDEX authorizations_merchant ON authorizations (merchant_id, id);

-- Stripe's model: the key is scoped (merchant, or account for credits); the fingerprint is a hash of the
-- operation and the request; the response is the encoded protobuf answered the first time.
CREATE TABLE idempotency_keys (
    scope         TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    response      BYTEA NOT NULL,
    created_at_us BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at_us);

CREATE TABLE events (
    sequence         BIGINT PRIMARY KEY,
    type             BIGINT NOT NULL,
    account_id       TEXT NOT NULL,
    authorization_id TEXT NOT NULL,
    amount           BIGINT NOT NULL,
    currency         TEXT NOT NULL,
    response_code    TEXT NOT NULL,
    occurred_at_us   BIGINT NOT NULL
);
CREATE INDEX events_account ON events (account_id, sequence);

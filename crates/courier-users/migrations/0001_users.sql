-- Portable across SQLite and PostgreSQL: one migration set serves both stores.
-- Times are microseconds since the Unix epoch; status is the proto enum number.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    email         TEXT NOT NULL,
    -- Lower-cased email: uniqueness is case-insensitive, the address is shown as given.
    email_key     TEXT NOT NULL UNIQUE,
    status        BIGINT NOT NULL,
    created_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL
);

-- ListUsers filtered by status walks this index in id order.
CREATE INDEX users_status_id ON users (status, id);

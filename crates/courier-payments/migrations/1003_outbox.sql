-- The transactional outbox: one row per ledger event to publish, inserted in the same transaction as the event
-- (so a committed event always has its row and a rolled-back one never does) when `[outbox]` names a broker.
-- The relay publishes pending rows (published_at_us NULL) in sequence order and stamps them only after the broker
-- confirmed; stamped rows are deleted after the retention. The event itself stays in `events` (WatchEvents).
CREATE TABLE outbox (
    sequence        BIGINT PRIMARY KEY,
    created_at_us   BIGINT NOT NULL,
    published_at_us BIGINT
);
CREATE INDEX outbox_pending ON outbox (published_at_us, sequence);

-- Every authorization has exactly one creation event (AUTHORIZED or DECLINED) of its account, and `courier ledger
-- check` verifies it; events_account (account_id, sequence) already orders an account's events. A listing of one
-- account's authorizations walks those events instead, so this second per-account index, which cost every
-- Authorize an insert on a random B-tree page (about a sixth of its server CPU on SQLite, docs/performance.md step
-- 12), goes.
DROP INDEX authorizations_account;

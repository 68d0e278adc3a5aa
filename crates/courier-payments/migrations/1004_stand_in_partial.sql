-- The stand-in daily limit sums an account's approvals decided by the stand-in policy (decided_by 2, DECIDER_STAND_IN),
-- which happen only while RiskService cannot answer. A partial index holds those rows alone: an ordinary
-- Authorize (decided by risk) no longer inserts into it, one random B-tree page fewer per authorization. The query
-- names the value as a literal, which both SQLite and PostgreSQL need to choose a partial index.
DROP INDEX authorizations_stand_in;
CREATE INDEX authorizations_stand_in ON authorizations (account_id, created_at_us) WHERE decided_by = 2;

-- Who assessed each authorization's risk (RiskService or the stand-in policy), and the score it gave. Added
-- columns with defaults: older rows read as "not consulted", which is what they were.
ALTER TABLE authorizations ADD COLUMN decided_by BIGINT NOT NULL DEFAULT 0;
ALTER TABLE authorizations ADD COLUMN risk_score BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN decided_by BIGINT NOT NULL DEFAULT 0;
-- Stand-in limits sum an account's stand-in approvals of the day.
CREATE INDEX authorizations_stand_in ON authorizations (account_id, decided_by, created_at_us);

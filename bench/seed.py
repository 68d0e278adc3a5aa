"""Seeds a courier SQLite store with a large, consistent ledger, for measuring Authorize against a full store.

    python bench/seed.py --db courier-data/courier.db [--accounts 1000000] [--authorizations 10000000]

The store must exist (start `courier up --data-dir DIR` once, so that its migrations ran) and no courier may be
running on it. Written straight into the tables in one transaction, the way courier's writer would have left
them, so that `courier ledger check` passes afterwards:

- every account: ACTIVE, credited once (one CREDITED event) with 1,000,000 minor units, nothing held;
- authorization n (1-based) on account n mod accounts: odd n APPROVED then VOIDED (an AUTHORIZED and a VOIDED
  event, nothing held or captured, resolved), even n DECLINED with 51 (one DECLINED event); each with its
  idempotency key (scope: its merchant) and a stored answer;
- events numbered 1..N without gaps, ledger_meta.last_sequence = N.

The rows go in by SQLite's recursive CTEs, not row by row from Python: 10M authorizations in a few minutes.
"""

import argparse
import sqlite3
import time

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--db", required=True)
parser.add_argument("--accounts", type=int, default=1_000_000)
parser.add_argument("--authorizations", type=int, default=10_000_000)
args = parser.parse_args()
accounts, authorizations = args.accounts, args.authorizations
if accounts < 1 or authorizations < 0 or authorizations % 2:
    parser.error("--accounts must be at least 1 and --authorizations an even number")

db = sqlite3.connect(args.db, isolation_level=None)
if db.execute("SELECT last_sequence FROM ledger_meta WHERE id = 1").fetchone() != (0,):
    raise SystemExit(f"seed.py: {args.db} is not an empty courier store (ledger_meta.last_sequence is not 0)")
# Seeding is one transaction that is either all there or not: its own durability does not matter.
db.execute("PRAGMA synchronous = OFF")
db.execute("PRAGMA cache_size = -1000000")
now_us = int(time.time() * 1e6)
started = time.monotonic()


def step(what, sql, **params):
    t = time.monotonic()
    db.execute(sql, {"accounts": accounts, "authorizations": authorizations, "now": now_us, **params})
    print(f"seed.py: {what} in {time.monotonic() - t:.1f} s", flush=True)


# Ids as courier makes them: a prefix and 32 hex digits. Authorization n's events follow the accounts' credits
# in pairs of authorizations: odd n has sequences base+1 (AUTHORIZED) and base+2 (VOIDED), even n base+3 (DECLINED),
# with base = accounts + 3 * ((n - 1) / 2).
numbers = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < :{})"
account_of = "printf('acc_%032x', (n % :accounts) + 1)"
authorization = "printf('aut_%032x', n)"
base = "(:accounts + 3 * ((n - 1) / 2))"

db.execute("BEGIN")
step("accounts", f"""{numbers.format("accounts")}
    INSERT INTO accounts (id, owner_user_id, currency, credit_limit, posted_balance, held_amount, status,
                          created_at_us, updated_at_us)
    SELECT printf('acc_%032x', n), printf('usr_%032x', n), 'USD', 0, 1000000, 0, 1, :now, :now FROM c""")
step("credit events", f"""{numbers.format("accounts")}
    INSERT INTO events (sequence, type, account_id, authorization_id, amount, currency, response_code,
                        occurred_at_us)
    SELECT n, 2, printf('acc_%032x', n), '', 1000000, 'USD', '', :now FROM c""")
step("authorizations", f"""{numbers.format("authorizations")}
    INSERT INTO authorizations (id, account_id, merchant_id, amount, currency, decision, response_code,
                                decline_reason, status, held_amount, captured_amount, available_after,
                                description, metadata_json, created_at_us, expires_at_us, resolved_at_us,
                                decided_by, risk_score)
    SELECT {authorization}, {account_of}, 'seed_merchant', 100, 'USD',
           CASE n % 2 WHEN 1 THEN 1 ELSE 2 END, CASE n % 2 WHEN 1 THEN '00' ELSE '51' END,
           0, CASE n % 2 WHEN 1 THEN 4 ELSE 1 END, 0, 0, 1000000, '', '{{}}', :now,
           CASE n % 2 WHEN 1 THEN :now + 604800000000 END, CASE n % 2 WHEN 1 THEN :now END, 1, 0 FROM c""")
step("authorization events", f"""{numbers.format("authorizations")}
    INSERT INTO events (sequence, type, account_id, authorization_id, amount, currency, response_code,
                        occurred_at_us)
    SELECT {base} + CASE n % 2 WHEN 1 THEN 1 ELSE 3 END, CASE n % 2 WHEN 1 THEN 3 ELSE 4 END, {account_of}, {authorization}, 100, 'USD',
           CASE n % 2 WHEN 1 THEN '00' ELSE '51' END, :now FROM c
    UNION ALL
    SELECT {base} + 2, 6, {account_of}, {authorization}, 100, 'USD', '00', :now FROM c WHERE n % 2 = 1""")
step("idempotency keys", f"""{numbers.format("authorizations")}
    INSERT INTO idempotency_keys (scope, idem_key, fingerprint, response, created_at_us)
    SELECT 'seed_merchant', printf('seed-%d', n), printf('%064x', n), x'', :now FROM c""")
events = accounts + authorizations * 3 // 2
step("ledger_meta", "UPDATE ledger_meta SET last_sequence = :events WHERE id = 1", events=events)
t = time.monotonic()
db.execute("COMMIT")
print(f"seed.py: commit in {time.monotonic() - t:.1f} s", flush=True)
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
print(f"seed.py: {accounts:,} accounts, {authorizations:,} authorizations, {events:,} events in "
      f"{time.monotonic() - started:.0f} s", flush=True)

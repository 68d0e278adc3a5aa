"""Users and payments of the Python baseline: the courier contract as a team following the grpcio tutorials
would write it. grpc.server with a ThreadPoolExecutor, servicer classes, sqlite3 with one connection per worker
thread, and the risk service (risk_server.py, another process) called over gRPC on every Authorize.

Authorize keeps courier's semantics: approve iff amount <= available (posted + credit limit - held), placing a
hold row; otherwise decline 51 (a normal response, not an error); unknown account 14; risk DENY 59. The same
idempotency key from the same merchant returns the stored authorization. The funds check and the hold are one
conditional UPDATE in one transaction, so concurrent authorizations cannot overdraw.

SQLite runs in WAL mode with synchronous=FULL and a 5 s busy timeout, as courier's SQLite store does.

Usage: python server.py --db PATH --risk 127.0.0.1:PORT [--port 0] [--workers 10];
prints "server: listening on 127.0.0.1:PORT".
"""

import argparse
import sqlite3
import threading
import uuid
from concurrent import futures

import grpc

from courier.payments.v1 import payments_pb2 as pb, payments_pb2_grpc
from courier.risk.v1 import risk_pb2, risk_pb2_grpc
from courier.users.v1 import users_pb2, users_pb2_grpc

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, status INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, owner_user_id TEXT NOT NULL REFERENCES users(id), currency TEXT NOT NULL,
    credit_limit INTEGER NOT NULL, posted_balance INTEGER NOT NULL DEFAULT 0, held_amount INTEGER NOT NULL DEFAULT 0,
    status INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS credits (
    account_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, amount INTEGER NOT NULL,
    PRIMARY KEY (account_id, idempotency_key));
CREATE TABLE IF NOT EXISTS authorizations (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, merchant_id TEXT NOT NULL, idempotency_key TEXT NOT NULL,
    amount INTEGER NOT NULL, currency TEXT NOT NULL, decision INTEGER NOT NULL, response_code TEXT NOT NULL,
    decline_reason INTEGER NOT NULL, status INTEGER NOT NULL, held_amount INTEGER NOT NULL,
    captured_amount INTEGER NOT NULL DEFAULT 0, available_after INTEGER NOT NULL, risk_score INTEGER NOT NULL,
    UNIQUE (merchant_id, idempotency_key));
CREATE TABLE IF NOT EXISTS holds (
    authorization_id TEXT PRIMARY KEY REFERENCES authorizations(id), account_id TEXT NOT NULL,
    amount INTEGER NOT NULL, released INTEGER NOT NULL DEFAULT 0);
"""

AUTH_COLUMNS = (
    "id, account_id, merchant_id, amount, currency, decision, response_code, decline_reason, status, "
    "held_amount, captured_amount, available_after, risk_score"
)


class Database:
    """One sqlite3 connection per worker thread (sqlite3 connections must not be shared across threads)."""

    def __init__(self, path):
        self.path = path
        self.local = threading.local()
        with self.connect() as conn:
            conn.executescript(SCHEMA)

    def connect(self):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=5)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            self.local.conn = conn
        return conn


def new_id(prefix):
    return f"{prefix}_{uuid.uuid4().hex}"


def account_message(row):
    id_, owner, currency, credit_limit, posted, held, status = row
    return pb.Account(
        id=id_, owner_user_id=owner, currency=currency, credit_limit=credit_limit, posted_balance=posted,
        held_amount=held, available_amount=posted + credit_limit - held, status=status,
    )


def authorization_message(row):
    (id_, account_id, merchant_id, amount, currency, decision, code, reason, status, held, captured, after,
     risk_score) = row
    return pb.Authorization(
        id=id_, account_id=account_id, merchant_id=merchant_id, amount=amount, currency=currency,
        decision=decision, response_code=code, decline_reason=reason, status=status, held_amount=held,
        captured_amount=captured, available_after=after, risk_score=risk_score,
        decided_by=pb.DECIDER_RISK,
    )


class UserServicer(users_pb2_grpc.UserServiceServicer):
    def __init__(self, db):
        self.db = db

    def CreateUser(self, request, context):
        if not request.name or "@" not in request.email:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name and a valid email are required")
        user_id = new_id("usr")
        conn = self.db.connect()
        try:
            with conn:
                conn.execute(
                    "INSERT INTO users (id, name, email, status) VALUES (?, ?, ?, ?)",
                    (user_id, request.name, request.email, users_pb2.USER_STATUS_ACTIVE),
                )
        except sqlite3.IntegrityError:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, "email already registered")
        user = users_pb2.User(id=user_id, name=request.name, email=request.email, status=users_pb2.USER_STATUS_ACTIVE)
        return users_pb2.CreateUserResponse(user=user)

    def GetUser(self, request, context):
        row = self.db.connect().execute(
            "SELECT id, name, email, status FROM users WHERE id = ?", (request.id,)
        ).fetchone()
        if row is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no user {request.id}")
        return users_pb2.GetUserResponse(user=users_pb2.User(id=row[0], name=row[1], email=row[2], status=row[3]))


class PaymentServicer(payments_pb2_grpc.PaymentServiceServicer):
    def __init__(self, db, risk_stub):
        self.db = db
        self.risk = risk_stub

    def _account(self, conn, account_id):
        return conn.execute(
            "SELECT id, owner_user_id, currency, credit_limit, posted_balance, held_amount, status "
            "FROM accounts WHERE id = ?",
            (account_id,),
        ).fetchone()

    def OpenAccount(self, request, context):
        conn = self.db.connect()
        owner = conn.execute("SELECT status FROM users WHERE id = ?", (request.owner_user_id,)).fetchone()
        if owner is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"no user {request.owner_user_id}")
        if len(request.currency) != 3 or request.credit_limit < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "currency must be ISO 4217 and credit_limit >= 0")
        account_id = new_id("acct")
        with conn:
            conn.execute(
                "INSERT INTO accounts (id, owner_user_id, currency, credit_limit, status) VALUES (?, ?, ?, ?, ?)",
                (account_id, request.owner_user_id, request.currency, request.credit_limit,
                 pb.ACCOUNT_STATUS_ACTIVE),
            )
        return pb.OpenAccountResponse(account=account_message(self._account(conn, account_id)))

    def GetAccount(self, request, context):
        row = self._account(self.db.connect(), request.account_id)
        if row is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no account {request.account_id}")
        return pb.GetAccountResponse(account=account_message(row))

    def CreditAccount(self, request, context):
        if request.amount <= 0 or not request.idempotency_key:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "amount must be > 0 and idempotency_key set")
        conn = self.db.connect()
        with conn:
            row = self._account(conn, request.account_id)
            if row is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no account {request.account_id}")
            try:
                conn.execute(
                    "INSERT INTO credits (account_id, idempotency_key, amount) VALUES (?, ?, ?)",
                    (request.account_id, request.idempotency_key, request.amount),
                )
                conn.execute(
                    "UPDATE accounts SET posted_balance = posted_balance + ? WHERE id = ?",
                    (request.amount, request.account_id),
                )
            except sqlite3.IntegrityError:
                pass  # a retry of a stored credit: answer with the account as it is
        return pb.CreditAccountResponse(account=account_message(self._account(conn, request.account_id)))

    def _stored(self, conn, merchant_id, key):
        row = conn.execute(
            f"SELECT {AUTH_COLUMNS} FROM authorizations WHERE merchant_id = ? AND idempotency_key = ?",
            (merchant_id, key),
        ).fetchone()
        return None if row is None else authorization_message(row)

    def Authorize(self, request, context):
        if request.amount <= 0 or not request.idempotency_key or not request.merchant_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "amount > 0, idempotency_key and merchant_id required")
        conn = self.db.connect()
        stored = self._stored(conn, request.merchant_id, request.idempotency_key)
        if stored is not None:
            return pb.AuthorizeResponse(authorization=stored)
        account = self._account(conn, request.account_id)
        if account is None:
            return pb.AuthorizeResponse(authorization=self._decide(conn, request, pb.DECLINE_REASON_UNKNOWN_ACCOUNT, "14", 0, 0))
        available = account[4] + account[3] - account[5]
        verdict = self.risk.Score(
            risk_pb2.ScoreRequest(
                account_id=request.account_id, merchant_id=request.merchant_id, amount=request.amount,
                currency=request.currency, available_amount=available,
            ),
            timeout=1.0,
        )
        if verdict.decision == risk_pb2.RISK_DECISION_DENY:
            reason, code = pb.DECLINE_REASON_SUSPECTED_FRAUD, "59"
        elif request.currency != account[2]:
            reason, code = pb.DECLINE_REASON_CURRENCY_MISMATCH, "13"
        else:
            reason, code = None, "00"
        return pb.AuthorizeResponse(authorization=self._decide(conn, request, reason, code, verdict.score, available))

    def _decide(self, conn, request, reason, code, risk_score, available):
        """Stores the decision; an approval holds the funds in the same transaction, iff they are available."""
        auth_id = new_id("auth")
        try:
            with conn:
                if reason is None:
                    held = conn.execute(
                        "UPDATE accounts SET held_amount = held_amount + ? "
                        "WHERE id = ? AND posted_balance + credit_limit - held_amount >= ?",
                        (request.amount, request.account_id, request.amount),
                    ).rowcount
                    if held != 1:
                        reason, code = pb.DECLINE_REASON_INSUFFICIENT_FUNDS, "51"
                    else:
                        conn.execute(
                            "INSERT INTO holds (authorization_id, account_id, amount) VALUES (?, ?, ?)",
                            (auth_id, request.account_id, request.amount),
                        )
                approved = reason is None
                after = conn.execute(
                    "SELECT posted_balance + credit_limit - held_amount FROM accounts WHERE id = ?",
                    (request.account_id,),
                ).fetchone()
                conn.execute(
                    f"INSERT INTO authorizations ({AUTH_COLUMNS}, idempotency_key) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (auth_id, request.account_id, request.merchant_id, request.amount, request.currency,
                     pb.DECISION_APPROVED if approved else pb.DECISION_DECLINED, code,
                     pb.DECLINE_REASON_UNSPECIFIED if approved else reason,
                     pb.AUTHORIZATION_STATUS_HELD if approved else pb.AUTHORIZATION_STATUS_DECLINED,
                     request.amount if approved else 0, 0, after[0] if after else available, risk_score,
                     request.idempotency_key),
                )
        except sqlite3.IntegrityError:
            # The same key raced in on another thread: its stored answer is the answer.
            return self._stored(conn, request.merchant_id, request.idempotency_key)
        return self._stored(conn, request.merchant_id, request.idempotency_key)

    def GetAuthorization(self, request, context):
        row = self.db.connect().execute(
            f"SELECT {AUTH_COLUMNS} FROM authorizations WHERE id = ?", (request.authorization_id,)
        ).fetchone()
        if row is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no authorization {request.authorization_id}")
        return pb.GetAuthorizationResponse(authorization=authorization_message(row))

    def Capture(self, request, context):
        conn = self.db.connect()
        with conn:
            row = conn.execute(
                "SELECT account_id, held_amount, status FROM authorizations WHERE id = ?", (request.authorization_id,)
            ).fetchone()
            if row is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no authorization {request.authorization_id}")
            account_id, held, status = row
            if status != pb.AUTHORIZATION_STATUS_HELD:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "authorization is not held")
            amount = request.amount or held
            if amount > held:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "amount above the held amount")
            conn.execute(
                "UPDATE accounts SET held_amount = held_amount - ?, posted_balance = posted_balance - ? WHERE id = ?",
                (held, amount, account_id),
            )
            conn.execute("UPDATE holds SET released = 1 WHERE authorization_id = ?", (request.authorization_id,))
            conn.execute(
                "UPDATE authorizations SET status = ?, captured_amount = ?, held_amount = 0 WHERE id = ?",
                (pb.AUTHORIZATION_STATUS_CAPTURED, amount, request.authorization_id),
            )
        row = conn.execute(
            f"SELECT {AUTH_COLUMNS} FROM authorizations WHERE id = ?", (request.authorization_id,)
        ).fetchone()
        return pb.CaptureResponse(authorization=authorization_message(row))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--risk", required=True, help="host:port of risk_server.py")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=10)
    args = parser.parse_args()
    db = Database(args.db)
    risk_stub = risk_pb2_grpc.RiskServiceStub(grpc.insecure_channel(args.risk))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    users_pb2_grpc.add_UserServiceServicer_to_server(UserServicer(db), server)
    payments_pb2_grpc.add_PaymentServiceServicer_to_server(PaymentServicer(db, risk_stub), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"server: listening on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()

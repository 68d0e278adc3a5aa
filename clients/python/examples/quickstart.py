"""Quickstart: seed courier with a user and a funded account, then authorize and capture a payment.

Start a server first (`courier up` in the repository: 127.0.0.1:50051, its token in ./courier-data/token),
then from the same directory:

    python clients/python/examples/quickstart.py

Another server: COURIER_SERVER_URL=http://host:port, and COURIER_TOKEN or COURIER_DATA_DIR for its token.
"""

from __future__ import annotations

import uuid

from courier.payments.v1 import payments_pb2

from courier_client import Client, errors


def main() -> None:
    with Client() as courier:
        courier.wait_ready(timeout=10)

        # A unique email, so that the example can run again against the same server.
        user = courier.create_user("Ada Lovelace", f"ada-{uuid.uuid4().hex[:8]}@example.com")
        account = courier.open_account(user.id, "USD")
        courier.credit_account(account.id, 10_000, "USD")  # amounts are minor units: 100.00 USD
        print(f"user {user.id}, account {account.id}: 100.00 USD")

        auth = courier.authorize(account.id, 2_500, "USD", merchant_id="coffee_shop", description="flat white")
        print(f"authorize 25.00: {payments_pb2.Decision.Name(auth.decision)} (code {auth.response_code})")
        captured = courier.capture(auth.id)  # all of the hold
        print(f"captured {captured.captured_amount / 100:.2f}")

        # A decline is an answer, not an error.
        declined = courier.authorize(account.id, 1_000_000, "USD", merchant_id="coffee_shop")
        print(f"authorize 10000.00: {payments_pb2.DeclineReason.Name(declined.decline_reason)}")

        # A refusal is an error, typed, with the server's reason.
        try:
            courier.void(auth.id)
        except errors.FailedPrecondition as refused:
            print(f"void after capture: {refused.code.name} {refused.reason}")

        balance = courier.get_account(account.id)
        print(f"posted {balance.posted_balance / 100:.2f}, available {balance.available_amount / 100:.2f}")


if __name__ == "__main__":
    main()

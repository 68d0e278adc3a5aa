"""AsyncClient (grpc.aio) against a real `courier up`."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from courier.payments.v1 import payments_pb2

from courier_client import AsyncClient, authorize_request, errors
from courier_client.interceptors import LoggingInterceptor, MetricsInterceptor

from .conftest import Server

MERCHANT = "m_python_sdk_async"


def email() -> str:
    return f"sdk-async-{uuid.uuid4().hex[:12]}@example.com"


@pytest.fixture
async def aclient(server: Server) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.address, data_dir=server.data_dir) as client:
        yield client


async def funded_account(client: AsyncClient, amount: int = 10_000) -> payments_pb2.Account:
    user = await client.create_user("Ada Async", email())
    account = await client.open_account(user.id, "USD")
    await client.credit_account(account.id, amount, "USD")
    return await client.get_account(account.id)


async def test_the_seed_flow(aclient: AsyncClient) -> None:
    await aclient.wait_ready()
    account = await funded_account(aclient)
    auth = await aclient.authorize(account.id, 2_500, "USD", merchant_id=MERCHANT)
    assert auth.decision == payments_pb2.DECISION_APPROVED
    captured = await aclient.capture(auth.id)
    assert captured.status == payments_pb2.AUTHORIZATION_STATUS_CAPTURED
    assert (await aclient.get_account(account.id)).posted_balance == 10_000 - 2_500
    assert (await aclient.get_authorization(auth.id)).captured_amount == 2_500


async def test_errors(aclient: AsyncClient) -> None:
    with pytest.raises(errors.InvalidArgument) as bad:
        await aclient.create_user("", "x")
    assert {v.field for v in bad.value.field_violations} == {"name", "email"}
    account = await funded_account(aclient)
    key = "sdk-async-" + uuid.uuid4().hex
    await aclient.authorize(account.id, 10, "USD", merchant_id=MERCHANT, idempotency_key=key)
    with pytest.raises(errors.AlreadyExists) as reused:
        await aclient.authorize(account.id, 11, "USD", merchant_id=MERCHANT, idempotency_key=key)
    assert reused.value.reason == "IDEMPOTENCY_KEY_REUSED"
    # Authorize, not a credit: a credit can commit and answer before the client's timer for a 1 µs deadline
    # fires, while Authorize refuses any budget under payments.risk_min_budget (10 ms) before it has any effect.
    with pytest.raises(errors.DeadlineExceeded) as late:
        await aclient.authorize(account.id, 1, "USD", merchant_id=MERCHANT, timeout=1e-6)
    assert late.value.outcome_unknown and late.value.idempotency_key


async def test_streams(aclient: AsyncClient) -> None:
    user = await aclient.create_user("Streamer", email())
    assert user.id in [u.id async for u in aclient.list_users()]
    account = await aclient.open_account(user.id, "USD")
    await aclient.credit_account(account.id, 1_000, "USD")
    ids = [(await aclient.authorize(account.id, 10, "USD", merchant_id=MERCHANT)).id for _ in range(3)]
    assert sorted([a.id async for a in aclient.list_authorizations(account.id)]) == sorted(ids)
    async with aclient.watch_events(account_id=account.id, timeout=10) as events:
        kinds = []
        async for event in events:
            kinds.append(event.type)
            if len(kinds) == 5:
                break
    assert kinds == [payments_pb2.EVENT_TYPE_ACCOUNT_OPENED, payments_pb2.EVENT_TYPE_CREDITED] + [
        payments_pb2.EVENT_TYPE_AUTHORIZED
    ] * 3
    # Resume after the last event seen: only what happens next.
    async with aclient.watch_events(events.last_sequence + 1, account_id=account.id, timeout=10) as later:
        await aclient.void(ids[0])
        async for event in later:
            assert event.type == payments_pb2.EVENT_TYPE_VOIDED and event.authorization_id == ids[0]
            break


async def test_authorize_stream_send_and_read_concurrently(aclient: AsyncClient) -> None:
    account = await funded_account(aclient, 1_000)
    async with aclient.authorize_stream() as stream:

        async def send() -> list[str]:
            sent = [await stream.send(account.id, 10, "USD", merchant_id=MERCHANT) for _ in range(10)]
            sent.append(await stream.send(account.id, -1, "USD", merchant_id=MERCHANT, correlation_id="bad"))
            await stream.done()
            return sent

        sending = asyncio.ensure_future(send())
        answers = {answer.correlation_id: answer async for answer in stream}
        sent = await sending
    assert set(answers) == set(sent)
    assert isinstance(answers["bad"].error, errors.InvalidArgument)
    assert sum(1 for a in answers.values() if a.ok) == 10


async def test_authorize_many_and_batch_capture(aclient: AsyncClient) -> None:
    account = await funded_account(aclient)

    async def requests() -> AsyncIterator[payments_pb2.AuthorizeRequest]:
        for _ in range(5):
            yield authorize_request(account.id, 100, "USD", merchant_id=MERCHANT)

    answers = [a async for a in aclient.authorize_many(requests())]
    held = [a.authorization.id for a in answers if a.authorization is not None]
    result = await aclient.batch_capture(held + ["auth_0190f5a0c2b87cc3a1b2c3d4e5f60718"])
    assert (result.captured, result.failed, result.captured_amount) == (5, 1, 500)
    assert isinstance(result.failures[0].error, errors.NotFound) and result.failures[0].index == 5


async def test_interceptors(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    metrics = MetricsInterceptor()
    async with AsyncClient(
        server.address, data_dir=server.data_dir, interceptors=[LoggingInterceptor(), metrics]
    ) as client:
        with caplog.at_level(logging.INFO, logger="courier_client"):
            user = await client.create_user("Async logged", email())
            with pytest.raises(errors.NotFound):
                await client.get_user("usr_0190f5a0c2b87cc3a1b2c3d4e5f60718")
            assert user.id in [u.id async for u in client.list_users()]
            # The reports are made once each call is done, from the event loop.
            for _ in range(100):
                if metrics.in_flight == 0 and metrics.count("ListUsers") == 1:
                    break
                await asyncio.sleep(0.01)
    assert metrics.count("CreateUser") == 1 and metrics.count("GetUser", "NOT_FOUND") == 1
    assert metrics.count("ListUsers") == 1 and metrics.in_flight == 0
    assert any(r.getMessage().startswith("UserService/GetUser NOT_FOUND") for r in caplog.records)

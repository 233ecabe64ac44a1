"""Standard Webhooks signing, the SSRF guard, and delivery to a real HTTP receiver."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from alerts_support import Receiver, condition, running
from pydantic import SecretStr

from cloud_service.alerts.dispatcher import Dispatcher
from cloud_service.alerts.errors import AddressRefused, DeliveryError, SignatureError
from cloud_service.alerts.outbox import Notification, OutboxPolicy, Status
from cloud_service.alerts.routing import Router
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.settings import (
    AlertSettings,
    MqttAlertSettings,
    WebhookEndpoint,
    WebhookSettings,
)
from cloud_service.alerts.ssrf import AddressPolicy, GuardedTransport
from cloud_service.alerts.store import SqlAlertStore, create_sqlite_engine, create_tables
from cloud_service.alerts.webhooks import Verifier, WebhookSink, new_secret, sign, signed_headers

NOW = 1_790_000_000_000
OLD, NEW = new_secret(), new_secret()


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_during_a_key_rotation_either_secret_verifies() -> None:
    headers = signed_headers([NEW, OLD], "msg_1", 1_700_000_000, b"{}")
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (OLD, NEW):
        assert Verifier([secret]).verify(headers, b"{}", now_s=1_700_000_000) == "msg_1"
    with pytest.raises(SignatureError) as info:
        Verifier([new_secret()]).verify(headers, b"{}", now_s=1_700_000_000)
    assert info.value.reason == "no_match"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"now_s": 1_700_000_000 + 301}, "stale"),
        ({"now_s": 1_700_000_000 - 301}, "stale"),
        ({"body": b'{"x":1}'}, "no_match"),
        ({"headers": {"webhook-id": "msg_1"}}, "missing_headers"),
        ({"headers": {**signed_headers([OLD], "msg_1", 1_700_000_000, b"{}"),
                      "webhook-id": "msg_2"}}, "no_match"),
    ],
)  # fmt: skip
def test_the_verifier_refuses_replays_and_tampering(change: dict[str, object], reason: str) -> None:
    args: dict[str, object] = {
        "headers": signed_headers([OLD], "msg_1", 1_700_000_000, b"{}"),
        "body": b"{}",
        "now_s": 1_700_000_000 + 299,
        **change,
    }
    with pytest.raises(SignatureError) as info:
        Verifier([OLD]).verify(**args)  # type: ignore[arg-type]
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "192.168.1.1", "172.16.0.1", "169.254.169.254", "100.100.100.200",
     "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fd00:ec2::254", "::ffff:127.0.0.1",
     "2002:7f00:1::"],
)  # fmt: skip
def test_non_public_addresses_are_refused_by_default(address: str) -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address(address)) is not None


def test_public_addresses_and_explicitly_allowed_networks_pass() -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address("93.184.216.34")) is None
    assert AddressPolicy().refusal(ipaddress.ip_address("2606:4700::1111")) is None
    allowed = AddressPolicy.allowing(["127.0.0.1/32"])
    assert allowed.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert allowed.refusal(ipaddress.ip_address("127.0.0.2")) is not None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 well-known prefix -> 169.254.169.254
        ("64:ff9b::a00:1", "private"),  # NAT64 -> 10.0.0.1
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 -> 127.0.0.1
        ("::ffff:0:a9fe:a9fe", "link-local"),  # IPv4-translated (SIIT) -> 169.254.169.254
        ("::ffff:0:c0a8:101", "private"),  # IPv4-translated -> 192.168.1.1
        ("::a9fe:a9fe", "link-local"),  # IPv4-compatible (deprecated) -> 169.254.169.254
        ("::7f00:1", "loopback"),  # IPv4-compatible -> 127.0.0.1
        ("::", "unspecified"),
        ("::1", "loopback"),
    ],
)
def test_ipv6_forms_embedding_an_ipv4_address_are_judged_by_it(address: str, reason: str) -> None:
    why = AddressPolicy().refusal(ipaddress.ip_address(address))
    assert why is not None
    assert why.startswith(reason)


async def test_a_rebinding_answer_in_nat64_form_is_refused_before_connecting() -> None:
    connected: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        return ["64:ff9b::a9fe:a9fe"]

    def handler(request: httpx.Request) -> httpx.Response:
        connected.append(request.url.host)
        return httpx.Response(204)

    guard = GuardedTransport(AddressPolicy(), resolver=resolver, inner=httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=guard) as client:
        with pytest.raises(AddressRefused) as info:
            await client.post("http://hooks.example.com/x")
    assert info.value.address == "64:ff9b::a9fe:a9fe"
    assert connected == []


def test_embedded_public_or_allowed_ipv4_addresses_pass() -> None:
    public = ("64:ff9b::5db8:d822", "::ffff:0:5db8:d822", "::5db8:d822")  # 93.184.216.34
    for address in public:
        assert AddressPolicy().refusal(ipaddress.ip_address(address)) is None, address
    allowed = AddressPolicy.allowing(["10.0.0.0/8"])
    assert allowed.refusal(ipaddress.ip_address("64:ff9b::a00:1")) is None
    assert allowed.refusal(ipaddress.ip_address("64:ff9b::a9fe:a9fe")) is not None


def endpoint(url: str, name: str = "ops") -> WebhookEndpoint:
    return WebhookEndpoint(name=name, url=url, secrets=[SecretStr(NEW), SecretStr(OLD)])


def note(recipient: str = "ops", payload: bytes = b'{"type":"alert.raised"}') -> Notification:
    return Notification(id="msg_t1", channel="webhook", recipient=recipient, kind="alert.raised",
                        payload=payload, created_ms=NOW, expires_ms=NOW + 60_000,
                        next_attempt_ms=NOW)  # fmt: skip


@pytest.mark.parametrize("host", ["127.0.0.1", "169.254.169.254", "localhost", "[::1]"])
async def test_loopback_and_metadata_urls_are_refused_before_connecting(host: str) -> None:
    with running(Receiver()) as receiver:
        url = f"http://{host}:{receiver.port}/hook"
        sink = WebhookSink(WebhookSettings(endpoints=[endpoint(url)]))
        try:
            with pytest.raises(AddressRefused) as info:
                await sink.send(note())
        finally:
            await sink.aclose()
    assert not info.value.retryable
    assert info.value.recipient == "ops"
    assert receiver.requests == []


async def test_the_checked_address_is_the_one_connected_to() -> None:
    """A name resolved once, checked, then pinned: no second lookup can rebind it."""
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    with running(Receiver()) as receiver:
        url = f"http://hooks.example:{receiver.port}/hook"
        settings = WebhookSettings(endpoints=[endpoint(url)], allow_networks=["127.0.0.1/32"])  # type: ignore[list-item]
        sink = WebhookSink(settings, resolver=resolver)
        try:
            await sink.send(note())
        finally:
            await sink.aclose()
    assert lookups == ["hooks.example"]
    (got,) = receiver.requests
    assert got.headers["host"] == f"hooks.example:{receiver.port}"


async def test_redirects_are_not_followed() -> None:
    with running(Receiver(statuses=[302], location="http://169.254.169.254/")) as receiver:
        settings = WebhookSettings(endpoints=[endpoint(receiver.url)],
                                   allow_networks=["127.0.0.1/32"])  # type: ignore[list-item]  # fmt: skip
        sink = WebhookSink(settings)
        try:
            with pytest.raises(DeliveryError) as info:
                await sink.send(note())
        finally:
            await sink.aclose()
    assert (info.value.status, info.value.retryable) == (302, False)
    assert len(receiver.requests) == 1


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlAlertStore]:
    engine = create_sqlite_engine(tmp_path / "alerts.sqlite")
    await create_tables(engine)
    yield SqlAlertStore(engine)
    await engine.dispose()


async def test_a_receiver_failing_twice_gets_exactly_one_accepted_signed_delivery(
    store: SqlAlertStore,
) -> None:
    with running(Receiver(statuses=[500, 503])) as receiver:
        settings = AlertSettings(
            webhooks=WebhookSettings(endpoints=[endpoint(receiver.url)],
                                     allow_networks=["127.0.0.1/32"]),  # type: ignore[list-item]
            mqtt=MqttAlertSettings(enabled=False),
        )  # fmt: skip
        policy = OutboxPolicy.from_settings(settings.outbox)
        router = Router(settings, policy)
        service = await AlertService.open(store, router)
        (raised,) = await service.observe([condition()], NOW)
        sink = WebhookSink(settings.webhooks)
        d = Dispatcher(store, {"webhook": sink}, policy, router.summary, rand=lambda: 0.0)
        try:
            now = NOW
            for _ in range(5):
                await d.run_once(now)
                due = await store.next_due_ms()
                if due is None:
                    break
                now = due
        finally:
            await sink.aclose()
    assert [r.status for r in receiver.requests] == [500, 503, 204]
    (accepted,) = receiver.accepted
    assert {r.headers["webhook-id"] for r in receiver.requests} == {accepted.headers["webhook-id"]}
    msg_id = Verifier([OLD]).verify(accepted.headers, accepted.body, now_s=time.time())
    doc = json.loads(accepted.body)
    assert doc["type"] == "alert.raised"
    assert doc["data"]["alert"]["id"] == raised.alert.id
    (row,) = await store.notifications()
    assert (row.id, row.status, row.attempts) == (msg_id, Status.DELIVERED, 3)

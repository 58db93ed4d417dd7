"""Confirmed commands, against FakeBridge on a real nats-server: a command sent on the
bridge's request path (``kryten.robot.command``) returns the bridge's confirmation or
raises; an unanswered attempt is sent again with the same request id (at least once);
``commands.confirm`` makes every command method wait for its confirmation."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from kryten_sync import (
    BridgeError,
    Confirmation,
    KrytenClient,
    KrytenTimeoutError,
    KrytenValidationError,
    NoRespondersError,
    commands,
)
from kryten_sync.commands import BUILDERS
from kryten_sync.confirm import ROBOT_COMMANDS, can_confirm, robot_request
from kryten_sync.testing import FakeBridge, MockKrytenClient
from tests._helpers import make_config
from tests._nats import NatsServer
from tests.command_samples import iter_samples

FAST = {"confirm_timeout": 0.3, "confirm_retry_delay": 0.01}


@pytest.fixture
def fake(shared_server: NatsServer) -> Iterator[FakeBridge]:
    with FakeBridge(shared_server.url) as bridge:
        yield bridge


def client_for(server: NatsServer, **settings: Any) -> KrytenClient:
    return KrytenClient(make_config(server.url, commands={**FAST, **settings}))


@pytest.fixture
def client(shared_server: NatsServer) -> Iterator[KrytenClient]:
    with client_for(shared_server) as c:
        yield c


def requests_of(fake: FakeBridge, command: str) -> list[dict[str, Any]]:
    return [r for r in fake.requests if r.get("command") == command]


def test_a_confirmed_command_returns_the_bridge_confirmation(
    fake: FakeBridge, client: KrytenClient
) -> None:
    confirmation = client.send_confirmed(commands.send_chat("lounge", "hello"))
    assert isinstance(confirmation, Confirmation)
    assert (confirmation.method, confirmation.command, confirmation.attempts) == (
        "send_chat",
        "say",
        1,
    )
    assert confirmation.data == {"success": True}
    (request,) = requests_of(fake, "say")
    assert request["args"] == {"message": "hello"}
    assert request["meta"]["request_id"] == confirmation.request_id
    assert (request["meta"]["domain"], request["meta"]["channel"]) == ("cytu.be", "lounge")
    assert fake.commands == []  # nothing on the fire-and-forget subjects


def test_an_unanswered_first_attempt_is_retried_and_confirmed(
    fake: FakeBridge, client: KrytenClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake.unanswered["say"] = 1  # the first attempt is lost
    confirmation = client.send_confirmed(commands.send_chat("lounge", "hello"))
    assert confirmation.attempts == 2
    attempts = requests_of(fake, "say")
    assert len(attempts) == 2
    # The same request each time: a receiver can drop the repeat by its id.
    assert {r["meta"]["request_id"] for r in attempts} == {confirmation.request_id}
    assert attempts[0]["args"] == attempts[1]["args"] == {"message": "hello"}
    (warning,) = [r for r in caplog.records if "no confirmation of 'say'" in r.getMessage()]
    assert warning.levelno == logging.WARNING and "attempt 1 of 3" in warning.getMessage()


def test_no_confirmation_after_the_last_attempt_is_a_timeout_naming_the_command(
    fake: FakeBridge, client: KrytenClient
) -> None:
    fake.unanswered["kick"] = 10
    with pytest.raises(KrytenTimeoutError) as info:
        client.send_confirmed(commands.kick_user("lounge", "spammer"), attempts=4)
    message = str(info.value)
    assert message.startswith("kick_user not confirmed after 4 attempts: ")
    assert "bridge command 'kick' got no reply within 0.3 s" in message
    assert len(requests_of(fake, "kick")) == 4


def test_a_refusal_raises_the_bridge_reason_at_once(fake: FakeBridge, client: KrytenClient) -> None:
    fake.data_errors["ban"] = "Failed to ban user"
    with pytest.raises(BridgeError) as info:
        client.send_confirmed(commands.ban_user("lounge", "troll", "spam"))
    assert (
        str(info.value) == "ban_user not confirmed: bridge command 'ban' failed: Failed to ban user"
    )
    assert info.value.command == "ban"
    assert len(requests_of(fake, "ban")) == 1  # an answer is never retried


def test_no_bridge_at_all_is_no_responders_after_the_attempts(shared_server: NatsServer) -> None:
    with client_for(shared_server, confirm_attempts=2) as c:
        with pytest.raises(NoRespondersError, match=r"^send_chat not confirmed after 2 attempts"):
            c.send_confirmed(commands.send_chat("lounge", "anyone?"))


def test_add_media_confirmation_carries_the_new_uid(fake: FakeBridge, client: KrytenClient) -> None:
    confirmation = client.send_confirmed(commands.queue_media("lounge", "yt", "abc", "next"))
    assert confirmation.command == "addvideo"
    assert confirmation.data == {"success": True, "uid": 1001}
    (request,) = requests_of(fake, "addvideo")
    assert request["args"] == {"type": "yt", "id": "abc", "pos": "next", "temp": True}


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "data"),
    list(iter_samples()),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_command_is_confirmed_with_the_keys_the_bridge_reads(
    fake: FakeBridge,
    client: KrytenClient,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    data: dict[str, Any],
) -> None:
    command = BUILDERS[method]("lounge", *args, **kwargs)
    if not can_confirm(command):
        with pytest.raises(KrytenValidationError, match="cannot be confirmed"):
            client.send_confirmed(command)
        return
    confirmation = client.send_confirmed(command)
    robot, sent = robot_request(command)
    assert confirmation.command == robot.name
    request = requests_of(fake, robot.name)[-1]
    assert request["args"] == sent
    assert sorted(sent.values(), key=repr) == sorted(data.values(), key=repr)


def test_only_unmute_has_no_request_path_command() -> None:
    assert [action for action, robot in ROBOT_COMMANDS.items() if robot is None] == ["unmute"]


def test_send_confirmed_checks_its_arguments(fake: FakeBridge, client: KrytenClient) -> None:
    with pytest.raises(KrytenValidationError, match="attempts must be an int >= 1"):
        client.send_confirmed(commands.send_chat("lounge", "x"), attempts=0)
    with pytest.raises(KrytenValidationError, match="timeout"):
        client.send_confirmed(commands.send_chat("lounge", "x"), timeout=-1)
    with pytest.raises(KrytenValidationError, match="not configured"):
        client.send_confirmed(commands.send_chat("lounge", "x", domain="other.example"))
    assert requests_of(fake, "say") == []


# --------------------------------------------------------------------------- confirmed mode


def test_confirmed_mode_makes_every_command_method_wait_for_its_confirmation(
    fake: FakeBridge, shared_server: NatsServer
) -> None:
    with client_for(shared_server, confirm=True) as c:
        fake.unanswered["say"] = 1
        request_id = c.send_chat("lounge", "hello")
        attempts = requests_of(fake, "say")
        assert [r["meta"]["request_id"] for r in attempts] == [request_id, request_id]
        fake.unanswered["setMotd"] = 5
        with pytest.raises(KrytenTimeoutError, match=r"^set_motd not confirmed after 3 attempts"):
            c.set_motd("lounge", "hi")
        assert fake.commands == []


def test_confirmed_mode_sends_unmute_unconfirmed_with_a_warning(
    fake: FakeBridge, shared_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    with client_for(shared_server, confirm=True) as c:
        correlation_id = c.unmute_user("lounge", "bob")
        assert fake.wait_for_command("unmute").correlation_id == correlation_id
    assert any("unmute_user is sent without confirmation" in r.getMessage() for r in caplog.records)


def test_confirmed_mode_covers_the_rank_checked_commands(
    fake: FakeBridge, shared_server: NatsServer
) -> None:
    with client_for(shared_server, confirm=True) as c:
        result = c.safe_set_motd("lounge", "<b>hi</b>")
        assert result["success"] is True
        (request,) = requests_of(fake, "setMotd")
        assert result["message_id"] == request["meta"]["request_id"]
        assert request["args"] == {"motd": "<b>hi</b>"}


def test_confirmed_commands_work_with_the_mock_client() -> None:
    config = {
        "nats": {"servers": ["nats://unused:4222"]},
        "channels": [{"domain": "cytu.be", "channel": "lounge"}],
        "chat_min_delay": 0,
        "commands": {"confirm": True, **FAST},
    }
    with MockKrytenClient(config) as mock:
        mock.bridge.unanswered["say"] = 1
        request_id = mock.send_chat("lounge", "hello")
        assert [r["meta"]["request_id"] for r in requests_of(mock.bridge, "say")] == [
            request_id,
            request_id,
        ]

"""kryten-py 0.17.5's own example programs, ported mechanically, run against a real
nats-server with FakeBridge publishing the bridge's event format.

The ports (tests/data/kryten_py_examples_sync/) are :func:`port` of the originals
(tests/data/kryten_py_examples/): ``async``/``await`` removed, ``asyncio.run(main())``
called as ``main()``, ``asyncio.sleep`` as ``time.sleep``, ``kryten`` imported as
``kryten_sync``; nothing else. The programs hard-code ``nats://localhost:4222``; the
harness runs ``main()`` on a thread with the module's ``KrytenClient`` pointed at the
test server instead (the only thing changed at run time), and ends it the way kryten-py
documents: ``client.stop()`` from elsewhere (or, in the lifecycle example, the
program's own group-restart handler).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kryten_sync import KrytenClient
from kryten_sync.testing import FakeBridge
from tests._helpers import wait_until
from tests._nats import NatsServer
from tests.test_service_lifecycle import Tap

DATA = Path(__file__).resolve().parent / "data"
ORIGINALS = DATA / "kryten_py_examples"
PORTS = DATA / "kryten_py_examples_sync"
EXAMPLES = sorted(p.name for p in ORIGINALS.glob("*.py"))


def port(text: str) -> str:
    """The mechanical port of one kryten-py program (line endings kept)."""
    uses_sleep = "asyncio.sleep(" in text
    lines = []
    for original in text.splitlines(keepends=True):
        if original.strip() == "import asyncio" and not uses_sleep:
            continue
        line = original.replace("import asyncio", "import time")
        line = line.replace("from kryten import", "from kryten_sync import")
        line = line.replace("async with ", "with ").replace("async def ", "def ")
        line = line.replace("await ", "").replace("asyncio.run(main())", "main()")
        lines.append(line.replace("asyncio.sleep(", "time.sleep("))
    return "".join(lines)


@pytest.mark.parametrize("name", EXAMPLES)
def test_ports_are_mechanical(name: str) -> None:
    original = (ORIGINALS / name).read_bytes().decode("utf-8")
    ported = (PORTS / name).read_bytes().decode("utf-8")
    assert ported == port(original)
    assert "async" not in ported and "await" not in ported and "from kryten " not in ported


class Program:
    """One ported program running ``main()`` on a thread against ``url``."""

    def __init__(self, name: str, url: str) -> None:
        spec = importlib.util.spec_from_file_location(f"ported_{name[:-3]}", PORTS / name)
        assert spec is not None and spec.loader is not None
        self.module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.module)  # its imports; main() runs below
        self.clients: list[KrytenClient] = []
        self.error: BaseException | None = None

        def pointed(config: dict[str, Any], logger: logging.Logger | None = None) -> KrytenClient:
            client = KrytenClient({**config, "nats": {**config["nats"], "servers": [url]}}, logger)
            self.clients.append(client)
            return client

        self.module.KrytenClient = pointed
        self.thread = threading.Thread(target=self._main, name=f"test-{name}", daemon=True)

    def _main(self) -> None:
        try:
            self.module.main()
        except BaseException as exc:
            self.error = exc

    @property
    def client(self) -> KrytenClient:
        wait_until(lambda: self.clients and self.clients[0].is_connected, 10, "the connection")
        return self.clients[0]

    def join(self, timeout: float = 10) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "main() did not return"
        assert self.error is None, repr(self.error)
        assert not self.client_was_left_connected()

    def client_was_left_connected(self) -> bool:
        return any(c.is_connected for c in self.clients)


@contextmanager
def running(name: str, url: str) -> Iterator[Program]:
    program = Program(name, url)
    program.thread.start()
    try:
        yield program
    finally:
        for client in program.clients:
            client.stop()
        program.thread.join(10)


def until(fake: FakeBridge, emit: Callable[[], object], action: str, timeout: float = 10) -> Any:
    """Emit again every 100 ms until the bot sends ``action``: the program registers its
    handlers some time after connecting, and an event before that is not seen."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            emit()
            stop.wait(0.1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        return fake.wait_for_command(action, timeout)
    finally:
        stop.set()
        thread.join(5)


def test_echo_bot(shared_server: NatsServer) -> None:
    with FakeBridge(shared_server.url) as fake, running("echo_bot.py", shared_server.url) as bot:
        client = bot.client
        chat = {"username": "alice", "msg": "hello", "meta": {}, "time": 1_700_000_000_000}
        command = until(fake, lambda: fake.emit("chatMsg", chat), "chat")
        assert command.data == {"message": "alice said: hello"} and command.problems == []
        client.stop()  # as kryten-py's run() is ended: stop() from elsewhere
        bot.join()


def test_kv_store_counter(shared_server: NatsServer, caplog: pytest.LogCaptureFixture) -> None:
    # The program's keys ("user:alice") are not valid key-value keys: nats-py refuses
    # them in kryten-py too, whose kv_get/kv_put swallow the error (the count never
    # grows and the bot answers "1 messages" forever). kryten-sync raises it, so the
    # handler's error is logged, naming the key, and the bot carries on.
    caplog.set_level(logging.INFO)
    with FakeBridge(shared_server.url) as fake:
        fake.client.get_or_create_kv_store("message_counts")  # as kryten-py needs it
        with running("kv_store_counter.py", shared_server.url) as bot:
            client = bot.client
            wait_until(lambda: "Counter bot started" in caplog.text, 10, "the program's start-up")
            assert "Loaded 0 user message counts from KV store" in caplog.text

            def chat() -> None:
                fake.emit("chatMsg", {"username": "alice", "msg": "!stats", "meta": {}})

            chat()
            wait_until(
                lambda: "invalid key-value key 'user:alice'" in caplog.text, 10, "the handler"
            )
            assert client.health().handler_errors >= 1
            assert fake.commands == []
            assert client.kv_keys("message_counts") == []
            client.stop()
            bot.join()


def test_lifecycle_and_kv_example(
    shared_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    tap = Tap(shared_server.url, "kryten.lifecycle.example_bot.>")
    try:
        with FakeBridge(shared_server.url) as fake:
            fake.client.get_or_create_kv_store("example_bot_state")  # as kryten-py needs it
            with running("lifecycle_and_kv_example.py", shared_server.url) as bot:
                client = bot.client
                connected = tap.wait("kryten.lifecycle.example_bot.connected")[0]
                assert connected["target"] == "NATS" and connected["service"] == "example_bot"
                startup = tap.wait("kryten.lifecycle.example_bot.startup")[0]
                assert startup["config_version"] == "1.0"
                assert startup["features"] == ["chat", "moderation"]
                wait_until(lambda: "Bot is ready" in caplog.text, 10, "the program's start-up")
                assert "Loaded config: {'enabled': True, 'max_messages': 100, 'timeout': 30}" in (
                    caplog.text
                )
                assert "Last user: Alice" in caplog.text
                assert "Unknown key returned: default_value" in caplog.text

                chat = {"username": "bob", "msg": "!echo hi there", "meta": {}}
                command = until(fake, lambda: fake.emit("chatMsg", chat), "chat")
                assert command.data == {"message": "Echo: hi there"}
                assert client.kv_get("example_bot_state", "last_user") == b"bob"
                # The bridge's usercount payload is a number: ``event.payload.get`` fails
                # in the program, as it does in kryten-py (whose RawEvent has that payload).
                fake.emit("usercount", 7)
                wait_until(lambda: "handle_usercount raised" in caplog.text, 10, "the handler")
                assert client.health().handler_errors >= 1
                assert client.kv_get("example_bot_state", "current_users") is None

                # The program's own restart handler stops it.
                client.publish_group_restart("test over", 0)
                bot.join()
            tap.wait("kryten.lifecycle.example_bot.disconnected")
            shutdown = tap.wait("kryten.lifecycle.example_bot.shutdown")[0]
            assert shutdown["reason"] == "User requested shutdown"
            assert "Cleanup complete" in caplog.text
    finally:
        tap.close()

"""An in-process NATS server, for test doubles that must not need a nats-server.

:class:`LoopbackServer` speaks core NATS (protocol 1) on ``127.0.0.1``: publish, subscribe
with ``*``/``>`` wildcards and queue groups, headers, and request/reply including the
no-responders status (503) that nats-py turns into ``NoRespondersError``. That is
everything the client uses except JetStream; there is no JetStream, authentication, TLS
or clustering (credentials a client sends are ignored).

It runs on a daemon thread of its own with an asyncio loop. The listening socket is
bound in the constructor, so :attr:`url` is known before :meth:`start`, and it stays
bound until :meth:`close`: the server can be stopped and started again on the same URL.
An optional :attr:`LoopbackServer.tap` (``tap(subject, reply, headers, payload)``) sees
every published message on the server's thread, before delivery: once a client's
``flush()`` has returned, the tap has seen all that client published before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from kryten_sync.errors import KrytenError

Tap = Callable[[str, str, bytes | None, bytes], None]

_MAX_PAYLOAD = 1024 * 1024
_MAX_LINE = 64 * 1024
_NO_RESPONDERS = b"NATS/1.0 503\r\n\r\n"
_STOP_TIMEOUT = 5.0


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether ``subject`` matches the subscription ``pattern`` (``*``: one token, a final
    ``>``: one or more)."""
    want, have = pattern.split("."), subject.split(".")
    for index, token in enumerate(want):
        if token == ">":
            return len(have) > index
        if index >= len(have) or (token != "*" and token != have[index]):
            return False
    return len(want) == len(have)


@dataclass(eq=False)
class _Sub:
    client: _Client
    sid: str
    subject: str
    queue: str
    left: int | None = None  # messages still to deliver after UNSUB <sid> <max>


@dataclass(eq=False)
class _Client:
    writer: asyncio.StreamWriter
    subs: dict[str, _Sub] = field(default_factory=dict)
    headers: bool = False
    no_responders: bool = False
    echo: bool = True
    verbose: bool = False

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


class _ProtocolError(Exception):
    """A client sent something this server does not understand (answered with -ERR)."""


class LoopbackServer:
    """See the module docstring. Also a context manager (start, then close)."""

    def __init__(self, *, tap: Tap | None = None) -> None:
        self.tap = tap
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self._ids = itertools.count(1)
        self._clients: set[_Client] = set()
        self._lock = threading.Lock()  # start/stop from any thread
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LoopbackServer {self.url} {state}>"

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    # -- lifecycle (any thread) --------------------------------------------------------

    def start(self) -> LoopbackServer:
        """Serve on :attr:`url`; returns once connections are accepted (idempotent)."""
        with self._lock:
            if self.running:
                return self
            if self._sock.fileno() < 0:
                raise KrytenError(f"{self!r} is closed")
            ready = threading.Event()
            failed: list[BaseException] = []
            thread = threading.Thread(
                target=self._run, args=(ready, failed), name="kryten-sync-loopback", daemon=True
            )
            self._thread = thread
            thread.start()
            ready.wait()
            if failed:
                thread.join()
                raise KrytenError(f"the loopback NATS server failed to start: {failed[0]!r}")
        return self

    def stop(self) -> None:
        """Close every client connection and stop serving (idempotent); the URL stays
        reserved for a later :meth:`start`."""
        with self._lock:
            thread, loop, stopped = self._thread, self._loop, self._stopped
            if thread is None or loop is None or stopped is None:
                return
            with contextlib.suppress(RuntimeError):  # the loop is already gone
                loop.call_soon_threadsafe(stopped.set)
            thread.join(_STOP_TIMEOUT)
            self._thread = self._loop = self._stopped = None

    def close(self) -> None:
        """Stop, and release the port."""
        self.stop()
        self._sock.close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the server's thread -------------------------------------------------------------

    def _run(self, ready: threading.Event, failed: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:
            failed.append(exc)
        finally:
            ready.set()
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        # A duplicate, so closing this server object keeps the bound port for a restart.
        server = await asyncio.start_server(self._client, sock=self._sock.dup(), limit=_MAX_LINE)
        ready.set()
        try:
            await self._stopped.wait()
        finally:
            server.close()
            for client in list(self._clients):
                client.writer.close()
            await server.wait_closed()
            self._clients.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer)
        self._clients.add(client)
        info = {
            "server_id": "kryten-sync-loopback",
            "server_name": "kryten-sync-loopback",
            "version": "2.10.0",
            "proto": 1,
            "host": "127.0.0.1",
            "port": self.port,
            "headers": True,
            "max_payload": _MAX_PAYLOAD,
            "client_id": next(self._ids),
            "client_ip": "127.0.0.1",
        }
        client.send(b"INFO " + json.dumps(info).encode() + b"\r\n")
        try:
            while True:
                line = await reader.readuntil(b"\r\n")
                try:
                    await self._operation(client, line[:-2], reader)
                except _ProtocolError as exc:
                    client.send(f"-ERR '{exc}'\r\n".encode())
                    break
                except ValueError:  # a size that is not a number, CONNECT that is not JSON
                    client.send(b"-ERR 'Unknown Protocol Operation'\r\n")
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._clients.discard(client)
            writer.close()

    async def _operation(self, client: _Client, line: bytes, reader: asyncio.StreamReader) -> None:
        op, _, rest = line.partition(b" ")
        args = rest.decode("utf-8", errors="replace").split()
        name = op.upper()
        if name == b"PING":
            client.send(b"PONG\r\n")
        elif name == b"PONG":
            return
        elif name == b"CONNECT":
            options = json.loads(rest or b"{}")
            client.headers = bool(options.get("headers", False))
            client.no_responders = bool(options.get("no_responders", False))
            client.echo = bool(options.get("echo", True))
            client.verbose = bool(options.get("verbose", False))
        elif name in (b"PUB", b"HPUB"):
            await self._publish(client, name == b"HPUB", args, reader)
        elif name == b"SUB" and len(args) in (2, 3):
            subject, sid = args[0], args[-1]
            client.subs[sid] = _Sub(client, sid, subject, args[1] if len(args) == 3 else "")
        elif name == b"UNSUB" and len(args) in (1, 2):
            sub = client.subs.get(args[0])
            if sub is not None:
                if len(args) == 2 and int(args[1]) > 0:
                    sub.left = int(args[1])
                else:
                    del client.subs[args[0]]
        else:
            raise _ProtocolError("Unknown Protocol Operation")
        if client.verbose and name not in (b"PING", b"PONG"):
            client.send(b"+OK\r\n")

    async def _publish(
        self, client: _Client, with_headers: bool, args: list[str], reader: asyncio.StreamReader
    ) -> None:
        sizes = 2 if with_headers else 1
        if len(args) not in (sizes + 1, sizes + 2):
            raise _ProtocolError("Unknown Protocol Operation")
        subject = args[0]
        reply = args[1] if len(args) == sizes + 2 else ""
        total = int(args[-1])
        header_size = int(args[-2]) if with_headers else 0
        if total > _MAX_PAYLOAD:
            raise _ProtocolError("Maximum Payload Violation")
        block = (await reader.readexactly(total + 2))[:total]
        headers = block[:header_size] if with_headers else None
        payload = block[header_size:]
        tap = self.tap
        if tap is not None:
            tap(subject, reply, headers, payload)
        delivered = self._deliver(client, subject, reply, headers, payload)
        if not delivered and reply and client.no_responders:
            self._deliver(client, reply, "", _NO_RESPONDERS, b"", only=client)

    def _deliver(
        self,
        sender: _Client,
        subject: str,
        reply: str,
        headers: bytes | None,
        payload: bytes,
        *,
        only: _Client | None = None,
    ) -> bool:
        """Send one message to every matching plain subscription and one member of each
        queue group; whether anyone got it."""
        plain: list[_Sub] = []
        groups: dict[str, list[_Sub]] = {}
        for client in [only] if only is not None else list(self._clients):
            if client is sender and not client.echo and only is None:
                continue
            for sub in list(client.subs.values()):
                if subject_matches(sub.subject, subject):
                    if sub.queue:
                        groups.setdefault(sub.queue, []).append(sub)
                    else:
                        plain.append(sub)
        chosen = plain + [random.choice(members) for members in groups.values()]
        for sub in chosen:
            self._send(sub, subject, reply, headers, payload)
        return bool(chosen)

    @staticmethod
    def _send(sub: _Sub, subject: str, reply: str, headers: bytes | None, payload: bytes) -> None:
        client = sub.client
        reply_part = f" {reply}" if reply else ""
        if headers is not None and client.headers:
            size = len(headers) + len(payload)
            line = f"HMSG {subject} {sub.sid}{reply_part} {len(headers)} {size}\r\n"
            client.send(line.encode() + headers + payload + b"\r\n")
        else:
            line = f"MSG {subject} {sub.sid}{reply_part} {len(payload)}\r\n"
            client.send(line.encode() + payload + b"\r\n")
        if sub.left is not None:
            sub.left -= 1
            if sub.left <= 0:
                client.subs.pop(sub.sid, None)


__all__ = ["LoopbackServer", "subject_matches"]

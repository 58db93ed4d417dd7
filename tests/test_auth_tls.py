"""Each auth/TLS setting of NatsConfig really reaches nats-py: real nats-server processes.

Every test connects with ``nats.connect(**cfg.nats.connect_options())`` and proves a
publish/subscribe round trip, or that the server (or the TLS check) refuses the client.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nkeys  # type: ignore[import-untyped]
import pytest
import trustme
from nats.errors import AuthorizationError
from nats.errors import Error as NatsError

from kryten_sync import KrytenClient, KrytenConnectionError
from kryten_sync.config import KrytenConfig
from tests._nats import NatsServer

SUBJECT = "kryten.test.auth"


def make_config(server: NatsServer, **nats_settings: Any) -> KrytenConfig:
    """A config for ``server`` that fails fast: one attempt, short timeout."""
    settings: dict[str, Any] = {
        "servers": [server.url],
        "connect_timeout": 2,
        "max_reconnect_attempts": 0,
        "reconnect_time_wait": 0,
    }
    settings.update(nats_settings)
    return KrytenConfig.from_dict(
        {"nats": settings, "channels": [{"domain": "cytu.be", "channel": "lounge"}]}
    )


async def _round_trip(config: KrytenConfig) -> bytes:
    nc = await nats.connect(**config.nats.connect_options())
    try:
        sub = await nc.subscribe(SUBJECT)
        await nc.publish(SUBJECT, b"ping")
        msg = await sub.next_msg(timeout=2)
        return msg.data
    finally:
        await nc.close()


def round_trip(config: KrytenConfig) -> None:
    assert asyncio.run(_round_trip(config)) == b"ping"


def refused(config: KrytenConfig) -> list[Exception]:
    """Connect, expect nats-py to give up; return the errors it reported on the way."""
    reported: list[Exception] = []

    async def error_cb(error: Exception) -> None:
        reported.append(error)

    async def attempt() -> None:
        with pytest.raises((NatsError, OSError, asyncio.TimeoutError)) as info:
            nc = await nats.connect(**config.nats.connect_options(), error_cb=error_cb)
            await nc.close()  # only reached if the server wrongly let us in
        reported.append(info.value)

    asyncio.run(asyncio.wait_for(attempt(), timeout=5))
    return reported


def assert_authorization_violation(errors: list[Exception]) -> None:
    assert any(
        isinstance(e, AuthorizationError) or "authorization violation" in str(e).lower()
        for e in errors
    ), errors


def server_logged(server: NatsServer, text: str, timeout: float = 2.0) -> bool:
    """Whether the server's log shows ``text`` (written asynchronously: poll briefly)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in server.log_path.read_text(errors="replace"):
            return True
        time.sleep(0.02)
    return False


# --- user/password, token, nkey ---------------------------------------------------------------


def test_user_password() -> None:
    conf = 'authorization { user: "alice", password: "s3cret-pw" }'
    with NatsServer(config=conf) as server:
        round_trip(make_config(server, user="alice", password="s3cret-pw"))
        assert_authorization_violation(
            refused(make_config(server, user="alice", password="wrong-pw"))
        )
        assert_authorization_violation(refused(make_config(server)))


def test_user_password_from_yaml_with_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = 'authorization { user: "bob", password: "from-env-pw" }'
    with NatsServer(config=conf) as server:
        monkeypatch.setenv("KS_TEST_NATS_PASSWORD", "from-env-pw")
        monkeypatch.setenv("KS_TEST_NATS_PORT", str(server.port))
        path = tmp_path / "bot.yaml"
        path.write_text(
            "nats:\n"
            "  servers: ['127.0.0.1:${KS_TEST_NATS_PORT}']\n"
            "  user: bob\n"
            "  password: ${KS_TEST_NATS_PASSWORD}\n"
            "  max_reconnect_attempts: 0\n"
            "channels: [{domain: cytu.be, channel: lounge}]\n"
        )
        round_trip(KrytenConfig.from_file(path))


def test_token() -> None:
    with NatsServer(config='authorization { token: "tok-123-abc" }') as server:
        round_trip(make_config(server, token="tok-123-abc"))
        assert_authorization_violation(refused(make_config(server, token="tok-wrong")))


def write_nkey_seed(path: Path) -> str:
    """Write a fresh user nkey seed to ``path``; return its public key (U...)."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    path.write_bytes(seed + b"\n")
    public: bytes = nkeys.from_seed(bytearray(seed)).public_key
    return public.decode()


def test_nkey_seed_file(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed.nk"
    public = write_nkey_seed(allowed)
    other = tmp_path / "other.nk"
    write_nkey_seed(other)
    conf = f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}'
    with NatsServer(config=conf) as server:
        round_trip(make_config(server, nkeys_seed=str(allowed)))
        assert_authorization_violation(refused(make_config(server, nkeys_seed=str(other))))


# --- TLS ----------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca_file: str
    other_ca_file: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    named_cert: str  # server certificate for "kryten.internal" only
    named_key: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    other = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("kryten-client")
    named = ca.issue_cert("kryten.internal")
    files = Pki(**{field: str(root / f"{field}.pem") for field in Pki.__dataclass_fields__})
    ca.cert_pem.write_to_path(files.ca_file)
    other.cert_pem.write_to_path(files.other_ca_file)
    for leaf, cert, key in (
        (server, files.server_cert, files.server_key),
        (client, files.client_cert, files.client_key),
        (named, files.named_cert, files.named_key),
    ):
        leaf.cert_chain_pems[0].write_to_path(cert)
        leaf.private_key_pem.write_to_path(key)
    return files


def tls_block(cert: str, key: str, extra: str = "") -> str:
    return f'tls {{ cert_file: "{cert}", key_file: "{key}", timeout: 2, {extra} }}'


def test_tls_with_ca(pki: Pki) -> None:
    with NatsServer(config=tls_block(pki.server_cert, pki.server_key)) as server:
        round_trip(make_config(server, tls_ca=pki.ca_file))
        # tls:// and the name localhost work the same.
        round_trip(
            make_config(server, servers=[f"tls://localhost:{server.port}"], tls_ca=pki.ca_file)
        )


def test_tls_untrusted_ca_refused(pki: Pki) -> None:
    with NatsServer(config=tls_block(pki.server_cert, pki.server_key)) as server:
        errors = refused(make_config(server, tls_ca=pki.other_ca_file))
        assert any(isinstance(e, ssl.SSLCertVerificationError) for e in errors), errors


def test_tls_client_certificate_required(pki: Pki) -> None:
    conf = tls_block(pki.server_cert, pki.server_key, f'ca_file: "{pki.ca_file}", verify: true')
    with NatsServer(config=conf) as server:
        round_trip(
            make_config(
                server, tls_ca=pki.ca_file, tls_cert=pki.client_cert, tls_key=pki.client_key
            )
        )
        # Without a client certificate the server ends the handshake.
        refused(make_config(server, tls_ca=pki.ca_file))
        assert server_logged(server, "client didn't provide a certificate")


def test_tls_client_certificate_from_untrusted_ca_refused(pki: Pki, tmp_path: Path) -> None:
    stranger = trustme.CA().issue_cert("kryten-client")
    cert, key = str(tmp_path / "stranger.pem"), str(tmp_path / "stranger.key")
    stranger.cert_chain_pems[0].write_to_path(cert)
    stranger.private_key_pem.write_to_path(key)
    conf = tls_block(pki.server_cert, pki.server_key, f'ca_file: "{pki.ca_file}", verify: true')
    with NatsServer(config=conf) as server:
        refused(make_config(server, tls_ca=pki.ca_file, tls_cert=cert, tls_key=key))
        assert server_logged(server, "certificate signed by unknown authority")


def test_tls_hostname(pki: Pki) -> None:
    with NatsServer(config=tls_block(pki.named_cert, pki.named_key)) as server:
        round_trip(make_config(server, tls_ca=pki.ca_file, tls_hostname="kryten.internal"))
        # Without it the certificate does not match 127.0.0.1.
        errors = refused(make_config(server, tls_ca=pki.ca_file))
        assert any(isinstance(e, ssl.SSLCertVerificationError) for e in errors), errors


def test_tls_handshake_first(pki: Pki) -> None:
    conf = tls_block(pki.server_cert, pki.server_key, "handshake_first: true")
    with NatsServer(config=conf) as server:
        round_trip(make_config(server, tls_ca=pki.ca_file, tls_handshake_first=True))


# --- what KrytenClient.connect() tells a person --------------------------------------------------


def client_connect_error(config: KrytenConfig) -> KrytenConnectionError:
    """Connect a KrytenClient (default retry settings) and return the error it raised."""
    start = time.monotonic()
    with pytest.raises(KrytenConnectionError) as info:
        KrytenClient(config).connect()
    assert time.monotonic() - start < 8, "connect() took too long to give up"
    assert threading.active_count() < 50
    return info.value


def test_client_reports_refused_credentials() -> None:
    with NatsServer(config="authorization { user: bot, password: right }") as server:
        config = make_config(
            server,
            user="bot",
            password="wrong-secret",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.1,
        )
        error = client_connect_error(config)
        assert "refused the credentials (authorization violation)" in str(error), error
        assert "wrong-secret" not in str(error)
        assert error.__cause__ is not None


def test_client_reports_untrusted_tls_certificate(pki: Pki) -> None:
    with NatsServer(config=tls_block(pki.server_cert, pki.server_key)) as server:
        error = client_connect_error(make_config(server, tls_ca=pki.other_ca_file))
        assert "TLS certificate" in str(error) and "not trusted" in str(error), error
        assert isinstance(error.__cause__, ssl.SSLCertVerificationError)


def test_client_connects_with_tls_and_password(pki: Pki) -> None:
    conf = (
        tls_block(pki.server_cert, pki.server_key) + "\nauthorization { user: bot, password: pw }"
    )
    with NatsServer(config=conf) as server:
        config = make_config(server, tls_ca=pki.ca_file, user="bot", password="pw")
        with KrytenClient(config) as client:
            client.subscribe(SUBJECT, lambda msg: msg.respond(b"pong"))
            assert client.request_message(SUBJECT, b"ping", timeout=2).data == b"pong"


def test_credentials_in_the_url_stay_out_of_errors_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with NatsServer(config="authorization { user: bot, password: right-pw }") as server:
        good = make_config(server, servers=[f"nats://bot:right-pw@127.0.0.1:{server.port}"])
        with caplog.at_level("DEBUG"), KrytenClient(good):
            pass
        assert "right-pw" not in caplog.text
        assert f"***@127.0.0.1:{server.port}" in caplog.text
        bad = make_config(server, servers=[f"nats://bot:wrong-pw@127.0.0.1:{server.port}"])
        error = client_connect_error(bad)
        assert "wrong-pw" not in str(error) and "***@" in str(error), error

"""Unit tests of kryten_sync.config: models, validation messages, files, env substitution."""

from __future__ import annotations

import json
import re
import ssl
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import trustme

from kryten_sync.config import (
    ChannelConfig,
    KrytenConfig,
    MetricsConfig,
    NatsConfig,
    ServiceConfig,
)
from kryten_sync.errors import ConfigWarning, KrytenValidationError

SECRET = "hunter2-very-secret"
TOKEN = "tok-very-secret"


def minimal(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "nats": {"servers": ["nats://127.0.0.1:4222"]},
        "channels": [{"domain": "cytu.be", "channel": "lounge"}],
    }
    data.update(overrides)
    return data


def invalid(data: dict[str, Any], source: str | None = None) -> KrytenValidationError:
    with pytest.raises(KrytenValidationError) as info:
        KrytenConfig.from_dict(data, source=source)
    return info.value


def problem_at(error: KrytenValidationError, path: str) -> str:
    """The message of the one problem at ``path`` (and check it is in str(error) too)."""
    found = [p for p in error.problems if p.startswith(f"{path}: ")]
    assert len(found) == 1, (path, error.problems)
    assert found[0] in str(error)
    return found[0][len(path) + 2 :]


# --- defaults ---------------------------------------------------------------------------


def test_defaults() -> None:
    cfg = KrytenConfig.from_dict(minimal())
    assert cfg.service is None
    assert cfg.metrics is None
    assert cfg.retry_attempts == 3
    assert cfg.retry_delay == 0.5
    assert cfg.request_timeout == 5.0
    assert cfg.handler_queue_size == 1000
    assert cfg.max_concurrent_handlers == 8
    assert cfg.handler_timeout == 30.0
    assert cfg.shutdown_timeout == 5.0
    assert cfg.exit_timeout == 1.0
    assert cfg.chat_burst == 4
    assert cfg.chat_min_delay == 1.0
    assert cfg.log_level == "INFO"
    n = cfg.nats
    assert n.servers == ["nats://127.0.0.1:4222"]
    assert n.name == "kryten-sync"
    assert n.user is None and n.password is None and n.token is None
    assert n.nkeys_seed is n.user_credentials is None
    assert n.tls_ca is n.tls_cert is n.tls_key is n.tls_hostname is None
    assert n.tls_handshake_first is False
    assert n.connect_timeout == 5.0
    assert n.reconnect_time_wait == 0.1
    assert n.reconnect_jitter == 0.1
    assert n.reconnect_buffer_size == 2 * 1024 * 1024
    assert n.max_reconnect_attempts == -1
    assert n.ping_interval == 120
    assert n.max_outstanding_pings == 2
    assert n.pending_msgs_limit == 65536
    assert n.pending_bytes_limit == 64 * 1024 * 1024
    assert n.drain_timeout == 5.0


def test_service_and_metrics_defaults() -> None:
    service = ServiceConfig(name="bot")
    assert service.version == "1.0.0"
    assert service.enable_lifecycle and service.enable_heartbeat and service.enable_discovery
    assert service.heartbeat_interval == 30
    assert service.health_port is None and service.metrics_port is None
    assert service.health_path == "/health" and service.metrics_path == "/metrics"
    metrics = MetricsConfig(port=0)
    assert metrics.host == "127.0.0.1"
    assert metrics.health_path == "/health" and metrics.metrics_path == "/metrics"


def test_nested_models_accepted_as_instances() -> None:
    cfg = KrytenConfig(
        nats=NatsConfig(servers=["localhost:4222"]),
        channels=[ChannelConfig(domain="cytu.be", channel="Lounge")],
        service=ServiceConfig(name="bot"),
        metrics=MetricsConfig(port=9100),
    )
    assert cfg.nats.servers == ["nats://localhost:4222"]
    assert cfg.service is not None and cfg.service.name == "bot"


# --- servers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("nats://h:4222", "nats://h:4222"),
        ("tls://h:4443", "tls://h:4443"),
        ("ws://h:8080", "ws://h:8080"),
        ("wss://h.example.com/nats", "wss://h.example.com/nats"),
        ("NATS://h:4222", "nats://h:4222"),
        ("nats://user:pw@h:4222", "nats://user:pw@h:4222"),
        ("localhost:4222", "nats://localhost:4222"),
        ("localhost", "nats://localhost:4222"),
        ("10.1.2.3:4223", "nats://10.1.2.3:4223"),
        ("[::1]:4222", "nats://[::1]:4222"),
        ("  nats://h:1  ", "nats://h:1"),
    ],
)
def test_server_urls_accepted(given: str, expected: str) -> None:
    assert NatsConfig(servers=[given]).servers == [expected]


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ("http://h:4222", "unsupported scheme"),
        ("://h:4222", "unsupported scheme"),
        ("not a url", "whitespace"),
        ("", "empty server URL"),
        ("nats://", "missing host"),
        ("nats://:4222", "missing host"),
        ("h:99999", "port must be 1-65535"),
        ("h:abc", "port must be 1-65535"),
        ("nats://h:0", "port must be 1-65535"),
        ("nats://h:4222/path", "unexpected path"),
        ("nats://h:4222?x=1", "unexpected path or query"),
    ],
)
def test_server_urls_rejected(given: str, fragment: str) -> None:
    error = invalid(minimal(nats={"servers": ["nats://ok:1", given]}))
    assert fragment in problem_at(error, "nats.servers[1]")
    assert len(error.problems) == 1


def test_servers_from_comma_separated_string() -> None:
    cfg = NatsConfig(servers="nats://a:1, b:2")
    assert cfg.servers == ["nats://a:1", "nats://b:2"]


@pytest.mark.parametrize("servers", [[], "", None])
def test_servers_required(servers: Any) -> None:
    error = invalid(minimal(nats={"servers": servers}))
    assert problem_at(error, "nats.servers")


def test_server_url_credentials_masked_in_repr() -> None:
    cfg = NatsConfig(servers=[f"nats://alice:{SECRET}@h:4222", f"tls://{TOKEN}@h:4443"])
    assert SECRET not in repr(cfg) and TOKEN not in repr(cfg)
    assert SECRET not in str(cfg) and TOKEN not in str(cfg)
    assert "nats://***@h:4222" in repr(cfg)
    # connect() still gets the real URLs.
    assert cfg.connect_options()["servers"][0] == f"nats://alice:{SECRET}@h:4222"


# --- field validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"nats": {"servers": ["h:1"], "connect_timeout": 0}}, "nats.connect_timeout"),
        ({"nats": {"servers": ["h:1"], "reconnect_time_wait": -1}}, "nats.reconnect_time_wait"),
        (
            {"nats": {"servers": ["h:1"], "max_reconnect_attempts": -2}},
            "nats.max_reconnect_attempts",
        ),
        ({"nats": {"servers": ["h:1"], "ping_interval": 0}}, "nats.ping_interval"),
        ({"nats": {"servers": ["h:1"], "max_outstanding_pings": 0}}, "nats.max_outstanding_pings"),
        ({"nats": {"servers": ["h:1"], "pending_msgs_limit": 0}}, "nats.pending_msgs_limit"),
        ({"nats": {"servers": ["h:1"], "pending_bytes_limit": -5}}, "nats.pending_bytes_limit"),
        ({"nats": {"servers": ["h:1"], "drain_timeout": 0}}, "nats.drain_timeout"),
        (
            {"nats": {"servers": ["h:1"], "tls_handshake_first": "maybe"}},
            "nats.tls_handshake_first",
        ),
        ({"retry_attempts": -1}, "retry_attempts"),
        ({"retry_attempts": 11}, "retry_attempts"),
        ({"retry_delay": 0}, "retry_delay"),
        ({"request_timeout": 0}, "request_timeout"),
        ({"handler_queue_size": 0}, "handler_queue_size"),
        ({"max_concurrent_handlers": 0}, "max_concurrent_handlers"),
        ({"chat_jitter": -0.5}, "chat_jitter"),
        ({"strict": "yes"}, "strict"),
        ({"metrics": {"port": 1, "serve": "maybe"}}, "metrics.serve"),
        ({"handler_timeout": 0}, "handler_timeout"),
        ({"shutdown_timeout": -1}, "shutdown_timeout"),
        ({"exit_timeout": 0}, "exit_timeout"),
        ({"chat_burst": 0}, "chat_burst"),
        ({"chat_min_delay": -0.1}, "chat_min_delay"),
        ({"channels": []}, "channels"),
        ({"channels": [{"domain": "cytu.be"}]}, "channels[0].channel"),
        ({"channels": [{"domain": " ", "channel": "x"}]}, "channels[0].domain"),
        ({"service": {"name": "bot", "heartbeat_interval": 0}}, "service.heartbeat_interval"),
        ({"service": {"name": "bot", "heartbeat_interval": 3601}}, "service.heartbeat_interval"),
        ({"service": {"name": "bot", "health_port": 70000}}, "service.health_port"),
        ({"service": {"name": "bot", "metrics_path": "metrics"}}, "service.metrics_path"),
        ({"service": {"version": "1"}}, "service.name"),
        ({"metrics": {"port": -1}}, "metrics.port"),
        ({"metrics": {"port": 65536}}, "metrics.port"),
        ({"metrics": {"port": 1, "host": ""}}, "metrics.host"),
        ({"metrics": {"port": 1, "health_path": "health"}}, "metrics.health_path"),
        ({"nats": {}}, "nats.servers"),
        ({"nats": None}, "nats"),
    ],
)
def test_each_validation_error_names_its_path(data: dict[str, Any], path: str) -> None:
    error = invalid(minimal(**data))
    assert problem_at(error, path)
    assert len(error.problems) == 1


def test_missing_top_level_sections() -> None:
    error = invalid({})
    assert problem_at(error, "nats") == "Field required"
    assert problem_at(error, "channels") == "Field required"


def test_heartbeat_interval_allows_short_test_values() -> None:
    assert ServiceConfig(name="bot", heartbeat_interval=0.2).heartbeat_interval == 0.2


def test_metrics_port_zero_means_pick_free_port() -> None:
    assert MetricsConfig(port=0).port == 0


def test_tls_cert_without_key() -> None:
    error = invalid(minimal(nats={"servers": ["h:1"], "tls_cert": "/c.pem"}))
    assert problem_at(error, "nats.tls_key") == "required when tls_cert is set"


def test_tls_key_without_cert() -> None:
    error = invalid(minimal(nats={"servers": ["h:1"], "tls_key": "/k.pem"}))
    assert "without tls_cert" in problem_at(error, "nats.tls_key")


def test_path_settings_expand_user() -> None:
    cfg = NatsConfig(servers=["h:1"], tls_ca="~/ca.pem", nkeys_seed="~/u.nk")
    assert cfg.tls_ca == str(Path.home() / "ca.pem")
    assert cfg.nkeys_seed == str(Path.home() / "u.nk")


def test_empty_strings_mean_unset_for_optional_settings() -> None:
    cfg = KrytenConfig.from_dict(
        minimal(
            nats={"servers": ["h:1"], "password": "", "token": " ", "tls_ca": "", "user": ""},
            service={"name": "bot", "health_port": "", "metrics_port": ""},
        )
    )
    assert cfg.nats.password is None and cfg.nats.token is None
    assert cfg.nats.tls_ca is None and cfg.nats.user is None
    assert cfg.service is not None and cfg.service.health_port is None


# --- channels, service names --------------------------------------------------------------


def test_channel_stripped_and_case_kept() -> None:
    channel = ChannelConfig(domain=" cytu.be ", channel=" 420Grindhouse ")
    assert channel.domain == "cytu.be"
    assert channel.channel == "420Grindhouse"


@pytest.mark.parametrize("name", ["", "   ", "!!!", "...", "*>"])
def test_channel_empty_after_normalisation(name: str) -> None:
    error = invalid(
        minimal(channels=[{"domain": "d", "channel": "ok"}, {"domain": "d", "channel": name}])
    )
    assert problem_at(error, "channels[1].channel")


@pytest.mark.parametrize(
    ("given", "expected"), [("My.Bot", "my-bot"), (" User Stats ", "user-stats")]
)
def test_service_name_normalised(given: str, expected: str) -> None:
    assert ServiceConfig(name=given).name == expected


@pytest.mark.parametrize("name", ["", "a*b", "a>b", "a\tb"])
def test_service_name_rejected(name: str) -> None:
    error = invalid(minimal(service={"name": name}))
    assert "subject token" in problem_at(error, "service.name")


def test_channel_for_and_default_domain() -> None:
    cfg = KrytenConfig.from_dict(
        minimal(
            channels=[
                {"domain": "cytu.be", "channel": "420Grindhouse"},
                {"domain": "other.tv", "channel": "My-Channel"},
            ]
        )
    )
    assert cfg.default_domain() == "cytu.be"
    assert cfg.channel_for("420grindhouse") is cfg.channels[0]
    assert cfg.channel_for("my-channel!") is cfg.channels[1]
    assert cfg.channel_for("My-Channel") is cfg.channels[1]
    assert cfg.channel_for("elsewhere") is None
    assert cfg.channel_for("!!!") is None


# --- log level -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("debug", "DEBUG"),
        ("Info", "INFO"),
        ("warning", "WARNING"),
        ("WARN", "WARNING"),
        ("warn", "WARNING"),
        (" error ", "ERROR"),
        ("critical", "CRITICAL"),
    ],
)
def test_log_level_normalised(given: str, expected: str) -> None:
    assert KrytenConfig.from_dict(minimal(log_level=given)).log_level == expected


@pytest.mark.parametrize("given", ["verbose", "", "TRACE", 10])
def test_log_level_rejected(given: Any) -> None:
    error = invalid(minimal(log_level=given))
    assert problem_at(error, "log_level")


# --- the one error and its message -------------------------------------------------------------


def test_every_problem_listed_at_once_with_source() -> None:
    data = {
        "nats": {
            "servers": ["http://x:1", "ok:1"],
            "connect_timeout": -1,
            "pasword": SECRET,
            "tls_cert": "/c.pem",
        },
        "channels": [{"domain": "d", "channel": "ok"}, {"domain": "d", "channel": "!!!"}],
        "service": {"name": "a*b"},
        "metrics": {"port": 99999},
        "log_level": "loud",
        "retry_atempts": 2,
        "strict": True,
    }
    error = invalid(data, source="bot.yaml")
    paths = [p.split(": ", 1)[0] for p in error.problems]
    assert paths == [
        "nats.servers[0]",
        "nats.tls_key",
        "nats.connect_timeout",
        "nats.pasword",
        "channels[1].channel",
        "service.name",
        "metrics.port",
        "log_level",
        "retry_atempts",
    ]
    message = str(error)
    assert message.startswith("invalid kryten-sync configuration in bot.yaml (9 problems):\n")
    assert message.count("\n") == 9
    for problem in error.problems:
        assert f"\n  {problem}" in message
    assert SECRET not in message
    assert isinstance(error, ValueError)


def test_unknown_key_suggests_the_nearest_setting() -> None:
    error = invalid(
        minimal(nats={"servers": ["h:1"], "pasword": "x"}, log_levl="INFO", zzz=1, strict=True)
    )
    assert problem_at(error, "nats.pasword") == "unknown setting (did you mean 'password'?)"
    assert problem_at(error, "log_levl") == "unknown setting (did you mean 'log_level'?)"
    # Not close to any setting: it could be a passphrase, so it is not named.
    assert problem_at(error, "<key not shown>") == "unknown setting"
    assert "zzz" not in str(error)


def test_unknown_key_in_list_item() -> None:
    error = invalid(minimal(channels=[{"domain": "d", "channel": "c", "chanel": "x"}], strict=True))
    assert problem_at(error, "channels[0].chanel") == "unknown setting (did you mean 'channel'?)"


def test_unknown_keys_warn_and_are_ignored_without_strict() -> None:
    data = minimal(
        nats={"servers": ["h:1"], "pasword": SECRET, SECRET: 1},
        channels=[{"domain": "d", "channel": "c", "chanel": "x"}],
        log_levl="DEBUG",
        zzz=1,
    )
    with pytest.warns(ConfigWarning) as caught:
        cfg = KrytenConfig.from_dict(data, source="bot.yaml")
    assert len(caught) == 1
    text = str(caught[0].message)
    assert text.startswith("kryten-sync configuration in bot.yaml: ignored 5 unknown settings: ")
    for line in (
        "nats.pasword: unknown setting (did you mean 'password'?)",
        "nats.<key not shown>: unknown setting",
        "channels[0].chanel: unknown setting (did you mean 'channel'?)",
        "log_levl: unknown setting (did you mean 'log_level'?)",
        "<key not shown>: unknown setting",
    ):
        assert line in text
    assert SECRET not in text
    assert "strict: true" in text
    assert cfg.log_level == "INFO" and cfg.nats.password is None
    assert caught[0].filename == __file__  # points at the caller, not into kryten_sync


def test_a_key_that_could_be_a_secret_is_not_shown_in_errors_either() -> None:
    error = invalid(minimal(strict=True, **{"Tok3n-AbC": 1}))
    assert problem_at(error, "<key not shown>") == "unknown setting"
    assert "Tok3n" not in str(error)


def test_kryten_py_configuration_is_accepted_without_warning() -> None:
    data = {
        "nats": {
            "servers": ["nats://localhost:4222"],
            "user": "u",
            "password": SECRET,
            "connect_timeout": 10,
            "reconnect_time_wait": 2,
            "max_reconnect_attempts": -1,
            "ping_interval": 120,
        },
        "channels": [{"domain": "cytu.be", "channel": "lounge"}],
        "service": {"name": "bot", "version": "1.0.0", "heartbeat_interval": 30},
        "metrics": {"port": 28282, "health_path": "/health", "metrics_path": "/metrics"},
        "retry_attempts": 3,
        "retry_delay": 1.0,
        "handler_timeout": 30.0,
        "max_concurrent_handlers": 1000,
        "log_level": "INFO",
        "chat_min_delay": 1.0,
        "chat_jitter": 0.5,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = KrytenConfig.from_dict(data)
    assert cfg.chat_jitter == 0.5 and cfg.max_concurrent_handlers == 1000
    assert cfg.metrics is not None and cfg.metrics.serve is False


def test_direct_construction_raises_kryten_validation_error() -> None:
    with pytest.raises(KrytenValidationError) as info:
        NatsConfig(servers=[], password=123)
    assert info.value.problems[0].startswith("servers: ")
    assert info.value.problems[1].startswith("password: ")
    assert str(info.value).startswith("invalid NATS settings (2 problems):")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_direct_construction_of_whole_config_keeps_nested_paths() -> None:
    with pytest.raises(KrytenValidationError) as info:
        KrytenConfig(
            nats={"servers": ["x:1"], "token": 5},
            channels=[{"domain": "d", "channel": "?"}],
        )
    assert [p.split(": ")[0] for p in info.value.problems] == ["nats.token", "channels[0].channel"]


def test_errors_never_quote_input_values() -> None:
    bad = {
        "nats": {"servers": [f"http://alice:{SECRET}@h:1"], "password": [SECRET], "token": 1},
        "channels": [{"domain": "d", "channel": "c"}],
        "log_level": SECRET,
        "retry_attempts": SECRET,
    }
    error = invalid(bad)
    assert len(error.problems) == 5
    assert SECRET not in str(error)
    assert SECRET not in repr(error)
    assert all(SECRET not in p for p in error.problems)
    assert "input_value" not in str(error)


def test_secrets_hidden_in_repr_str_and_dump() -> None:
    cfg = KrytenConfig.from_dict(
        minimal(nats={"servers": ["h:1"], "user": "alice", "password": SECRET, "token": TOKEN})
    )
    for text in (repr(cfg), str(cfg), repr(cfg.nats), str(cfg.model_dump()), cfg.model_dump_json()):
        assert SECRET not in text
        assert TOKEN not in text
    assert cfg.nats.password is not None
    assert cfg.nats.password.get_secret_value() == SECRET


# --- coerce -------------------------------------------------------------------------------------


def test_coerce_from_dict() -> None:
    cfg = KrytenConfig.coerce(minimal(log_level="debug"))
    assert isinstance(cfg, KrytenConfig)
    assert cfg.log_level == "DEBUG"


def test_coerce_passes_an_instance_through() -> None:
    cfg = KrytenConfig.from_dict(minimal())
    assert KrytenConfig.coerce(cfg) is cfg


def test_coerce_rejects_other_types() -> None:
    with pytest.raises(KrytenValidationError, match="KrytenConfig or a mapping"):
        KrytenConfig.coerce("config.yaml")  # type: ignore[arg-type]


def test_coerce_invalid_mapping() -> None:
    with pytest.raises(KrytenValidationError, match=r"channels: "):
        KrytenConfig.coerce(minimal(channels=[]))


def test_from_dict_top_level_must_be_a_mapping() -> None:
    with pytest.raises(KrytenValidationError, match="top level must be a mapping"):
        KrytenConfig.from_dict([1, 2])  # type: ignore[arg-type]


# --- files --------------------------------------------------------------------------------------

YAML_TEXT = """\
nats:
  servers:
    - localhost:4222
  user: alice
  password: ${KS_TEST_PASSWORD}
channels:
  - domain: cytu.be
    channel: Lounge
service:
  name: My Bot
  heartbeat_interval: 0.5
log_level: warn
"""


def test_from_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KS_TEST_PASSWORD", SECRET)
    data = minimal(nats={"servers": ["h:1"], "password": "${KS_TEST_PASSWORD}"})
    path = tmp_path / "bot.json"
    path.write_text(json.dumps(data))
    cfg = KrytenConfig.from_json(path)
    assert cfg.nats.password is not None
    assert cfg.nats.password.get_secret_value() == SECRET
    assert KrytenConfig.from_file(str(path)) == cfg


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".YAML"])
def test_from_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    monkeypatch.setenv("KS_TEST_PASSWORD", SECRET)
    path = tmp_path / f"bot{suffix}"
    path.write_text(YAML_TEXT)
    cfg = KrytenConfig.from_file(path)
    assert cfg.nats.servers == ["nats://localhost:4222"]
    assert cfg.nats.password is not None
    assert cfg.nats.password.get_secret_value() == SECRET
    assert cfg.channels[0].channel == "Lounge"
    assert cfg.service is not None
    assert cfg.service.name == "my-bot"
    assert cfg.service.heartbeat_interval == 0.5
    assert cfg.log_level == "WARNING"
    assert KrytenConfig.from_yaml(path) == cfg


def test_from_file_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "bot.toml"
    path.write_text("")
    with pytest.raises(KrytenValidationError, match=r"bot\.toml.*use \.json, \.yaml or \.yml"):
        KrytenConfig.from_file(path)


@pytest.mark.parametrize("name", ["nope.json", "nope.yaml", "nope.yml"])
def test_missing_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with pytest.raises(FileNotFoundError) as info:
        KrytenConfig.from_file(path)
    assert str(path) in str(info.value)
    assert info.value.filename == str(path)


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "nats": {"servers": ["h:1"]},\n  "channels": [\n}\n')
    with pytest.raises(KrytenValidationError) as info:
        KrytenConfig.from_json(path)
    assert str(path) in str(info.value)
    assert "invalid JSON at line 4" in str(info.value)


def test_invalid_yaml_names_file_and_line_without_the_text(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"nats:\n  servers: [h:1]\n  password: {SECRET}\n   bad: [\n")
    with pytest.raises(KrytenValidationError) as info:
        KrytenConfig.from_yaml(path)
    message = str(info.value)
    assert str(path) in message
    assert "invalid YAML at line 4" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("list.json", "[1, 2]", "list"),
        ("str.json", '"x"', "str"),
        ("list.yaml", "- a\n- b\n", "list"),
        ("empty.yaml", "", "an empty document"),
        ("scalar.yml", "42\n", "int"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, name: str, text: str, kind: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(KrytenValidationError) as info:
        KrytenConfig.from_file(path)
    assert str(path) in str(info.value)
    assert f"top level must be a mapping, not {kind}" in str(info.value)


def test_validation_error_from_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text("nats:\n  servers: [h:1]\nchannels: []\n")
    with pytest.raises(KrytenValidationError) as info:
        KrytenConfig.from_yaml(path)
    assert f"in {path} (1 problem)" in str(info.value)
    assert info.value.problems[0].startswith("channels: ")


def test_yaml_without_pyyaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text(YAML_TEXT)
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ImportError, match=r"pip install 'kryten-sync\[yaml\]'"):
        KrytenConfig.from_yaml(path)


def test_utf8_bom_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(minimal()).encode())
    assert KrytenConfig.from_json(path).channels[0].channel == "lounge"


# --- environment substitution -------------------------------------------------------------------


def load_yaml(tmp_path: Path, text: str) -> KrytenConfig:
    path = tmp_path / "env.yaml"
    path.write_text(text)
    return KrytenConfig.from_yaml(path)


BASE = "nats:\n  servers: [h:1]\nchannels:\n  - {domain: cytu.be, channel: lounge}\n"


def test_env_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KS_USER", "alice")
    cfg = load_yaml(tmp_path, BASE.replace("[h:1]", "[h:1]\n  user: ${KS_USER}"))
    assert cfg.nats.user == "alice"


def test_env_default_used_when_unset_or_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KS_UNSET", raising=False)
    monkeypatch.setenv("KS_EMPTY", "")
    monkeypatch.setenv("KS_SET", "INFO")
    text = BASE + (
        'log_level: "${KS_UNSET:-debug}"\n'
        "service:\n  name: ${KS_EMPTY:-bot}\n  version: ${KS_UNSET:-}x\n"
        "  health_path: ${KS_UNSET:-/h:ok}\n"
    )
    cfg = load_yaml(tmp_path, text)
    assert cfg.log_level == "DEBUG"
    assert cfg.service is not None
    assert cfg.service.name == "bot"
    assert cfg.service.version == "x"
    assert cfg.service.health_path == "/h:ok"


def test_env_set_overrides_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KS_LEVEL", "error")
    cfg = load_yaml(tmp_path, BASE + "log_level: ${KS_LEVEL:-debug}\n")
    assert cfg.log_level == "ERROR"


def test_env_missing_names_var_file_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KS_NO_PASSWORD", raising=False)
    monkeypatch.delenv("KS_NO_CHANNEL", raising=False)
    text = BASE.replace("[h:1]", "[h:1]\n  password: ${KS_NO_PASSWORD}") + (
        "service: {name: '${KS_NO_CHANNEL}-bot'}\n"
    )
    path = tmp_path / "env.yaml"
    path.write_text(text)
    with pytest.raises(KrytenValidationError) as info:
        KrytenConfig.from_yaml(path)
    message = str(info.value)
    assert str(path) in message
    assert problem_at(info.value, "nats.password") == (
        "environment variable KS_NO_PASSWORD is not set"
    )
    assert problem_at(info.value, "service.name") == (
        "environment variable KS_NO_CHANNEL is not set"
    )


def test_env_missing_in_list_item_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KS_NO_SERVER", raising=False)
    path = tmp_path / "env.json"
    path.write_text(json.dumps(minimal(nats={"servers": ["a:1", "${KS_NO_SERVER}"]})))
    with pytest.raises(KrytenValidationError) as info:
        KrytenConfig.from_json(path)
    assert "KS_NO_SERVER" in problem_at(info.value, "nats.servers[1]")
    assert str(path) in str(info.value)


def test_env_dollar_dollar_is_literal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KS_X", "nope")
    cfg = load_yaml(tmp_path, BASE.replace("[h:1]", "[h:1]\n  password: 'p$$w$${KS_X}$'"))
    assert cfg.nats.password is not None
    assert cfg.nats.password.get_secret_value() == "p$w${KS_X}$"


def test_env_several_references_in_one_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KS_HOST", "nats.example.com")
    monkeypatch.setenv("KS_PORT", "4333")
    monkeypatch.delenv("KS_SCHEME", raising=False)
    text = BASE.replace("[h:1]", '["${KS_SCHEME:-tls}://${KS_HOST}:${KS_PORT}", "b:1"]')
    cfg = load_yaml(tmp_path, text)
    assert cfg.nats.servers == ["tls://nats.example.com:4333", "nats://b:1"]


def test_env_numeric_values_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KS_PORT", "9100")
    monkeypatch.setenv("KS_TIMEOUT", "2.5")
    monkeypatch.setenv("KS_FIRST", "true")
    text = BASE.replace(
        "[h:1]", "[h:1]\n  connect_timeout: ${KS_TIMEOUT}\n  tls_handshake_first: ${KS_FIRST}"
    )
    text += "metrics:\n  port: ${KS_PORT}\nretry_attempts: ${KS_RETRY:-7}\n"
    cfg = load_yaml(tmp_path, text)
    assert cfg.metrics is not None
    assert cfg.metrics.port == 9100
    assert cfg.nats.connect_timeout == 2.5
    assert cfg.nats.tls_handshake_first is True
    assert cfg.retry_attempts == 7


def test_env_numeric_value_out_of_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KS_PORT", "70000")
    with pytest.raises(KrytenValidationError) as info:
        load_yaml(tmp_path, BASE + "metrics: {port: '${KS_PORT}'}\n")
    assert problem_at(info.value, "metrics.port")


def test_env_keys_and_non_strings_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KS_KEY", "log_level")
    with pytest.raises(KrytenValidationError) as info:
        load_yaml(tmp_path, BASE + "strict: true\n${KS_KEY}: debug\n")
    # Substituted, the key would be a valid setting and raise nothing.
    assert problem_at(info.value, "<key not shown>") == "unknown setting"


def test_env_malformed_reference(tmp_path: Path) -> None:
    with pytest.raises(KrytenValidationError) as info:
        load_yaml(tmp_path, BASE + "log_level: ${1BAD}\n")
    assert "malformed" in problem_at(info.value, "log_level")


def test_env_only_for_files() -> None:
    cfg = KrytenConfig.from_dict(minimal(nats={"servers": ["h:1"], "user": "${NOT_EXPANDED}"}))
    assert cfg.nats.user == "${NOT_EXPANDED}"


# --- connect_options ------------------------------------------------------------------------------


def test_connect_options_minimal() -> None:
    options = NatsConfig(servers=["h:1"]).connect_options()
    assert options == {
        "servers": ["nats://h:1"],
        "name": "kryten-sync",
        "tls_handshake_first": False,
        "connect_timeout": 5.0,
        "reconnect_time_wait": 0.1,
        "max_reconnect_attempts": -1,
        "ping_interval": 120,
        "max_outstanding_pings": 2,
        "drain_timeout": 5.0,
        "allow_reconnect": True,
    }


def test_connect_options_full(tmp_path: Path) -> None:
    seed = tmp_path / "user.nk"
    seed.write_text("SUAxxx\n")
    creds = tmp_path / "user.creds"
    creds.write_text("x\n")
    cfg = NatsConfig(
        servers=["a:1", "tls://b:2"],
        name=None,
        user="alice",
        password=SECRET,
        token=TOKEN,
        nkeys_seed=str(seed),
        user_credentials=str(creds),
        tls_hostname="nats.example.com",
        tls_handshake_first=True,
        connect_timeout=1.5,
        reconnect_time_wait=0,
        max_reconnect_attempts=0,
        ping_interval=10,
        max_outstanding_pings=3,
        pending_msgs_limit=10,
        pending_bytes_limit=1000,
        drain_timeout=2,
    )
    options = cfg.connect_options()
    assert options == {
        "servers": ["nats://a:1", "tls://b:2"],
        "user": "alice",
        "password": SECRET,
        "token": TOKEN,
        "nkeys_seed": str(seed),
        "user_credentials": str(creds),
        "tls_hostname": "nats.example.com",
        "tls_handshake_first": True,
        "connect_timeout": 1.5,
        "reconnect_time_wait": 0,
        "max_reconnect_attempts": 0,
        "ping_interval": 10,
        "max_outstanding_pings": 3,
        "drain_timeout": 2,
        "allow_reconnect": False,
    }
    # The options hold a copy: changing it does not change the config.
    options["servers"].append("x")
    assert cfg.servers == ["nats://a:1", "tls://b:2"]


@pytest.mark.parametrize(("attempts", "allow"), [(-1, True), (0, False), (1, True), (60, True)])
def test_zero_reconnect_attempts_disables_reconnect(attempts: int, allow: bool) -> None:
    # nats-py reads max_reconnect_attempts=0 as "no limit"; 0 must mean "never reconnect".
    options = NatsConfig(servers=["h:1"], max_reconnect_attempts=attempts).connect_options()
    assert options["allow_reconnect"] is allow
    assert options["max_reconnect_attempts"] == attempts


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_connect_options_tls_context(tmp_path: Path, ca: trustme.CA) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert("client")
    cert = tmp_path / "client.pem"
    key = tmp_path / "client.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))

    only_ca = NatsConfig(servers=["h:1"], tls_ca=str(ca_file)).connect_options()
    assert isinstance(only_ca["tls"], ssl.SSLContext)
    assert only_ca["tls"].verify_mode == ssl.CERT_REQUIRED
    assert only_ca["tls"].check_hostname is True

    both = NatsConfig(
        servers=["h:1"], tls_ca=str(ca_file), tls_cert=str(cert), tls_key=str(key)
    ).connect_options()
    assert isinstance(both["tls"], ssl.SSLContext)

    without_ca = NatsConfig(servers=["h:1"], tls_cert=str(cert), tls_key=str(key))
    assert isinstance(without_ca.connect_options()["tls"], ssl.SSLContext)
    assert NatsConfig(servers=["h:1"]).tls_context() is None


@pytest.mark.parametrize("field", ["tls_ca", "tls_cert", "tls_key"])
def test_unreadable_tls_file_names_field_and_path(tmp_path: Path, field: str) -> None:
    existing = tmp_path / "exists.pem"
    existing.write_text("x")
    missing = tmp_path / "missing.pem"
    paths = {"tls_ca": str(existing), "tls_cert": str(existing), "tls_key": str(existing)}
    paths[field] = str(missing)
    cfg = NatsConfig(servers=["h:1"], password=SECRET, **paths)
    with pytest.raises(KrytenValidationError) as info:
        cfg.connect_options()
    assert info.value.problems == [
        f"nats.{field}: cannot read {missing}: No such file or directory"
    ]
    assert SECRET not in str(info.value)


def test_tls_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(KrytenValidationError, match=r"nats\.tls_ca: cannot read"):
        NatsConfig(servers=["h:1"], tls_ca=str(tmp_path)).tls_context()


def test_invalid_ca_file(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    with pytest.raises(KrytenValidationError) as info:
        NatsConfig(servers=["h:1"], tls_ca=str(bogus)).connect_options()
    assert info.value.problems[0].startswith(f"nats.tls_ca: no usable CA certificate in {bogus}")


def test_invalid_cert_chain(tmp_path: Path, ca: trustme.CA) -> None:
    cert = tmp_path / "client.pem"
    ca.issue_cert("client").cert_chain_pems[0].write_to_path(str(cert))
    with pytest.raises(KrytenValidationError) as info:
        NatsConfig(servers=["h:1"], tls_cert=str(cert), tls_key=str(cert)).connect_options()
    assert info.value.problems[0].startswith(f"nats.tls_cert: cannot load the certificate {cert}")


def test_encrypted_key_refused_without_prompting(tmp_path: Path, ca: trustme.CA) -> None:
    from cryptography.hazmat.primitives import serialization

    leaf = ca.issue_cert("client")
    cert = tmp_path / "client.pem"
    key = tmp_path / "client.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    private = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    with pytest.raises(KrytenValidationError) as info:
        NatsConfig(servers=["h:1"], tls_cert=str(cert), tls_key=str(key)).connect_options()
    assert info.value.problems == [f"nats.tls_key: {key} is encrypted; use an unencrypted key"]


@pytest.mark.parametrize("field", ["nkeys_seed", "user_credentials"])
def test_unreadable_nkeys_file(tmp_path: Path, field: str) -> None:
    missing = tmp_path / "missing"
    cfg = NatsConfig(servers=["h:1"], **{field: str(missing)})
    with pytest.raises(KrytenValidationError) as info:
        cfg.connect_options()
    assert info.value.problems == [
        f"nats.{field}: cannot read {missing}: No such file or directory"
    ]


def test_nkeys_package_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = tmp_path / "user.nk"
    seed.write_text("SU\n")
    monkeypatch.setitem(sys.modules, "nkeys", None)
    with pytest.raises(ImportError, match="pip install nkeys"):
        NatsConfig(servers=["h:1"], nkeys_seed=str(seed)).connect_options()


# --- events and commands ----------------------------------------------------------------


def test_events_and_commands_defaults() -> None:
    cfg = KrytenConfig.from_dict(minimal())
    events = cfg.events
    assert (events.durable, events.shared, events.group) == (False, False, None)
    assert events.stream == "KRYTEN_EVENTS"
    assert (events.max_age, events.max_bytes, events.max_msgs) == (86400.0, 1024**3, 1_000_000)
    assert (events.replicas, events.max_deliver, events.ack_wait) == (1, 5, 10.0)
    assert events.recent_ids == 10_000
    assert cfg.event_group is None  # core mode: every instance gets every event
    commands = cfg.commands
    assert (commands.confirm, commands.confirm_timeout) == (False, None)
    assert (commands.confirm_attempts, commands.confirm_retry_delay) == (3, 0.5)


@pytest.mark.parametrize(
    ("service", "events", "group"),
    [
        ({"name": "My Bot"}, {"durable": True}, "my-bot"),
        ({"name": "bot"}, {"shared": True, "group": "greeters"}, "greeters"),
        (None, {"durable": True, "group": "g_1"}, "g_1"),
        ({"name": "bot"}, {"group": "unused"}, None),  # neither shared nor durable
    ],
)
def test_event_group(service: Any, events: dict[str, Any], group: str | None) -> None:
    cfg = KrytenConfig.from_dict(minimal(service=service, events=events))
    assert cfg.event_group == group


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        (
            {"events": {"durable": True}},
            "events.group",
            "required with events.durable or events.shared when no service is set",
        ),
        (
            {"service": {"name": "bot:1"}, "events": {"shared": True}},
            "events.group",
            "service.name cannot name the group (use 1-64 letters, digits, '-' and '_'); "
            "set events.group",
        ),
        ({"events": {"group": "a.b"}}, "events.group", "use 1-64 letters, digits, '-' and '_'"),
        ({"events": {"stream": "x y"}}, "events.stream", "use 1-64 letters, digits, '-' and '_'"),
        (
            {"events": {"ack_wait": 0.5}},
            "events.ack_wait",
            "Input should be greater than or equal to 1",
        ),
        (
            {"events": {"max_deliver": 0}},
            "events.max_deliver",
            "Input should be greater than or equal to 1",
        ),
        ({"events": {"max_bytes": 0}}, "events.max_bytes", "Input should be greater than 0"),
        (
            {"strict": True, "events": {"maxage": 1}},
            "events.maxage",
            "unknown setting (did you mean 'max_age'?)",
        ),
        (
            {"commands": {"confirm_attempts": 0}},
            "commands.confirm_attempts",
            "Input should be greater than or equal to 1",
        ),
        (
            {"commands": {"confirm_timeout": 0}},
            "commands.confirm_timeout",
            "Input should be greater than 0",
        ),
    ],
)
def test_events_and_commands_errors_name_their_path(
    data: dict[str, Any], path: str, message: str
) -> None:
    assert problem_at(invalid(minimal(**data)), path) == message


def test_empty_group_and_timeout_mean_unset() -> None:
    cfg = KrytenConfig.from_dict(minimal(events={"group": " "}, commands={"confirm_timeout": ""}))
    assert cfg.events.group is None and cfg.commands.confirm_timeout is None


# --- mistakes a newcomer makes ------------------------------------------------------------


def test_web_addresses_as_channel_or_domain_name_the_value_to_use() -> None:
    error = invalid(
        minimal(channels=[{"domain": "https://cytu.be", "channel": "https://cytu.be/r/lounge"}])
    )
    assert problem_at(error, "channels[0].domain") == "is a web address: use the domain 'cytu.be'"
    assert problem_at(error, "channels[0].channel") == (
        "is a web address: use the channel name 'lounge' (and the domain 'cytu.be')"
    )
    error = invalid(minimal(channels=[{"domain": "cytu.be", "channel": "cytu.be/r/lounge"}]))
    assert "use the channel name 'lounge'" in problem_at(error, "channels[0].channel")


def test_a_setting_one_level_too_high_says_where_it_belongs() -> None:
    data = minimal()
    data["servers"] = data.pop("nats")["servers"]
    data["strict"] = True
    error = invalid(data)
    assert problem_at(error, "servers") == "unknown setting (did you mean 'nats.servers'?)"
    with pytest.warns(ConfigWarning, match=re.escape("channels[].domain")):
        KrytenConfig.from_dict(minimal(domain="cytu.be"))


@pytest.mark.parametrize("path", ["bot.yaml", Path("bot.json")])
def test_a_file_name_as_config_points_to_from_file(path: str | Path) -> None:
    with pytest.raises(KrytenValidationError) as caught:
        KrytenConfig.coerce(path)  # type: ignore[arg-type]
    name = str(path)
    assert f"pass KrytenConfig.from_file({name!r})" in str(caught.value)

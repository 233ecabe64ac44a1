"""Gateway configuration: loading, validation messages by field and line, env overrides."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.config import (
    ENV_PREFIX,
    AgentConfig,
    DataType,
    HttpSourceConfig,
    RegisterType,
    WordOrder,
    config_from_mapping,
    load_config,
    parse_toml,
)
from edge_agent.errors import ConfigError, ConfigIssue
from shared.messages import SignalKind
from shared.topics import DEFAULT_PREFIX, Channel

VALID = """\
site = "plant-01"
gateway = "gw-01"

[broker]
host = "127.0.0.1"
port = 1883
username = "gw-01"
password = "s3cret"

[batching]
max_readings = 50
max_age_s = 2.5

[[sources]]
type = "modbus"
id = "plc1"
host = "127.0.0.1"
port = 5020
unit_id = 1
timeout_s = 0.5

[[signals]]
id = "stock.sku-001"
source = "plc1"
address = 0
kind = "stock_level"
unit = "pcs"
sku = "SKU-001"
location = "WH1"
period_s = 1.0

[[signals]]
id = "stock.sku-001.scaled"
source = "plc1"
address = 2
register_type = "input"
data_type = "uint32"
word_order = "little"
scale = 0.01
kind = "stock_level"
period_s = 5
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No override from the developer's or CI's environment may leak into these tests."""
    import os  # noqa: PLC0415

    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "gw.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> dict[str | None, str]:
    return {issue.field: issue.message for issue in exc.value.issues}


def test_valid_file_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, VALID))
    assert type(cfg) is AgentConfig
    assert (cfg.site, cfg.gateway) == ("plant-01", "gw-01")
    assert cfg.topic_prefix == DEFAULT_PREFIX
    assert cfg.client_id == "gw-01"  # defaults to the gateway id
    assert cfg.broker.password is not None
    assert cfg.broker.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(cfg)
    assert (cfg.broker.max_inflight, cfg.broker.max_queued) == (20, 1000)
    assert (cfg.batching.max_readings, cfg.batching.max_age_s) == (50, 2.5)
    (src,) = cfg.sources
    assert (src.type, src.id, src.port, src.unit_id, src.timeout_s) == (
        "modbus",
        "plc1",
        5020,
        1,
        0.5,
    )
    first, second = cfg.signals
    assert first.register_type is RegisterType.HOLDING
    assert first.data_type is DataType.FLOAT32
    assert first.word_order is WordOrder.BIG
    assert first.kind is SignalKind.STOCK_LEVEL
    assert (first.scale, first.offset, first.sku) == (1.0, 0.0, "SKU-001")
    assert second.register_type is RegisterType.INPUT
    assert second.data_type is DataType.UINT32
    assert second.word_order is WordOrder.LITTLE
    assert second.scale == 0.01
    assert cfg.signals_of("plc1") == [first, second]
    assert cfg.topics.topic(cfg.site, cfg.gateway, Channel.TELEMETRY) == (
        "flightdeck/v1/plant-01/gw-01/telemetry"
    )


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, VALID))
    with pytest.raises(AttributeError, match="immutable"):
        cfg.site = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        cfg.broker.port = 1  # type: ignore[misc]


def test_config_hash_is_stable_normalised_and_ignores_the_password(tmp_path: Path) -> None:
    base = load_config(write(tmp_path, VALID, "a.toml"))
    digest = base.config_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert load_config(write(tmp_path, VALID, "b.toml")).config_hash() == digest
    # Spelling out a default does not change the hash...
    explicit = VALID.replace(
        'kind = "stock_level"\nunit', 'kind = "stock_level"\nscale = 1.0\nunit'
    )
    assert load_config(write(tmp_path, explicit, "c.toml")).config_hash() == digest
    # ... nor does the password (the hash is published); a real change does.
    other_pw = VALID.replace("s3cret", "other")
    assert load_config(write(tmp_path, other_pw, "d.toml")).config_hash() == digest
    moved = VALID.replace("port = 5020", "port = 5021")
    assert load_config(write(tmp_path, moved, "e.toml")).config_hash() != digest


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('gateway = "gw-01"', 'gateway = "gw/01"', "gateway"),
        ('site = "plant-01"', 'site = "plant+#"', "site"),
        ('id = "stock.sku-001"\n', 'id = "stock/sku-001"\n', "signals[0].id"),
        ('id = "plc1"', 'id = "plc 1"', "sources[0].id"),
        ('sku = "SKU-001"', 'sku = "SKU/001"', "signals[0].sku"),
    ],
)
def test_bad_id_names_the_field(tmp_path: Path, old: str, new: str, field: str) -> None:
    assert old in VALID
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, VALID.replace(old, new, 1)))
    found = problems(exc)
    assert field in found, found
    assert "ids are 1-64 characters" in found[field]
    assert field in str(exc.value)


def test_bad_topic_prefix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, 'topic_prefix = "flightdeck/+"\n' + VALID))
    assert "topic_prefix" in problems(exc)


def test_missing_fields_are_named(tmp_path: Path) -> None:
    text = VALID.replace('site = "plant-01"\n', "").replace('host = "127.0.0.1"\nport = 5020', "")
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    found = problems(exc)
    assert found["site"] == "Field required"
    assert found["sources[0].host"] == "Field required"  # the union tag is not in the path


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    text = VALID.replace("max_readings = 50", "max_readings = = 50")
    line = text.splitlines().index("max_readings = = 50") + 1
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    (issue,) = exc.value.issues
    assert issue.field is None
    assert issue.line == line
    assert issue.column is not None
    assert f"line {line}" in str(exc.value)
    assert "TOML syntax error" in issue.message


def test_parse_toml_keeps_the_path() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_toml("a = [1,\n", "x.toml")
    assert exc.value.path == Path("x.toml")
    assert str(exc.value).startswith("x.toml: ")


def test_wrong_types_and_ranges(tmp_path: Path) -> None:
    text = (
        VALID.replace("port = 5020", "port = 70000")
        .replace('data_type = "uint32"', 'data_type = "float64"')
        .replace("max_age_s = 2.5", 'max_age_s = "soon"')
    )
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    found = problems(exc)
    assert set(found) == {"sources[0].port", "signals[1].data_type", "batching.max_age_s"}
    assert "70000" in found["sources[0].port"]


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    # A typo must not silently fall back to a default.
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, VALID.replace("address = 0", "adress = 0")))
    found = problems(exc)
    assert "signals[0].adress" in found
    assert "Extra inputs" in found["signals[0].adress"]


def test_cross_references_are_checked_by_field(tmp_path: Path) -> None:
    text = VALID.replace('source = "plc1"\naddress = 0', 'source = "plc9"\naddress = 0').replace(
        'id = "stock.sku-001.scaled"', 'id = "stock.sku-001"'
    )
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    found = problems(exc)
    assert "unknown source 'plc9'" in found["signals[0].source"]
    assert "plc1" in found["signals[0].source"]
    assert "duplicate signal id" in found["signals[1].id"]


def test_modbus_signal_needs_an_address_inside_the_map(tmp_path: Path) -> None:
    text = VALID.replace("address = 0\n", "").replace("address = 2", "address = 65535")
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    found = problems(exc)
    assert found["signals[0].address"] == "required for a modbus source"
    assert "ends past 65535" in found["signals[1].address"]


def test_tls_files_must_exist_and_pair(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    ok = VALID.replace("[batching]", f'[broker.tls]\nca_file = "{ca}"\n\n[batching]')
    cfg = load_config(write(tmp_path, ok))
    assert cfg.broker.tls is not None
    assert cfg.broker.tls.ca_file == ca
    missing = VALID.replace(
        "[batching]", f'[broker.tls]\nca_file = "{tmp_path / "missing.pem"}"\n\n[batching]'
    )
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, missing))
    assert "does not point to a file" in problems(exc)["broker.tls.ca_file"]
    unpaired = VALID.replace("[batching]", f'[broker.tls]\ncert_file = "{ca}"\n\n[batching]')
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, unpaired))
    assert "together" in problems(exc)["broker.tls"]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "nope.toml")
    (issue,) = exc.value.issues
    assert issue.field is None
    assert "cannot read" in issue.message
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'site = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def test_env_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLIGHTDECK_EDGE_BROKER__HOST", "mqtt.example.net")
    monkeypatch.setenv("FLIGHTDECK_EDGE_BROKER__PASSWORD", "from-env")
    monkeypatch.setenv("flightdeck_edge_batching__max_readings", "7")  # case-insensitive
    monkeypatch.setenv("FLIGHTDECK_EDGE_GATEWAY", "gw-02")
    cfg = load_config(write(tmp_path, VALID))
    assert cfg.broker.host == "mqtt.example.net"
    assert cfg.broker.password is not None
    assert cfg.broker.password.get_secret_value() == "from-env"
    assert cfg.broker.port == 1883  # the rest of [broker] still comes from the file
    assert cfg.broker.username == "gw-01"
    assert cfg.batching.max_readings == 7
    assert cfg.batching.max_age_s == 2.5
    assert cfg.gateway == "gw-02"
    assert cfg.client_id == "gw-02"
    assert type(cfg) is AgentConfig


def test_env_can_supply_a_missing_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = VALID[VALID.index("[batching]") :]
    text = 'site = "plant-01"\ngateway = "gw-01"\n' + text
    monkeypatch.setenv("FLIGHTDECK_EDGE_BROKER__HOST", "10.0.0.5")
    cfg = load_config(write(tmp_path, text))
    assert (cfg.broker.host, cfg.broker.port) == ("10.0.0.5", 1883)


def test_invalid_env_value_names_field_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLIGHTDECK_EDGE_BROKER__PORT", "not-a-port")
    monkeypatch.setenv("FLIGHTDECK_EDGE_GATEWAY", "gw/evil")
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, VALID))
    found = problems(exc)
    assert "FLIGHTDECK_EDGE_BROKER__PORT" in found["broker.port"]
    assert "FLIGHTDECK_EDGE_GATEWAY" in found["gateway"]


def test_secrets_never_appear_in_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLIGHTDECK_EDGE_BROKER__PASSWORD", "")
    text = VALID.replace('password = "s3cret"', "password = 12345678")
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(parse_toml(text), use_env=False)
    assert "broker.password" in problems(exc)
    assert "12345678" not in str(exc.value)


def test_building_without_env_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLIGHTDECK_EDGE_SITE", "from-env")
    values = parse_toml(VALID)
    assert config_from_mapping(values, use_env=False).site == "plant-01"
    assert AgentConfig.from_mapping(values).site == "plant-01"
    assert config_from_mapping(values).site == "from-env"


def test_config_error_is_structured_and_picklable() -> None:
    err = ConfigError(
        "gw.toml", [ConfigIssue("site", "Field required"), ConfigIssue(None, "x", 3, 4)]
    )
    again = pickle.loads(pickle.dumps(err))
    assert isinstance(again, ConfigError)
    assert again.path == Path("gw.toml")
    assert again.issues == err.issues
    assert str(again) == str(err)
    assert "site: Field required" in str(err)
    assert "line 3, column 4: x" in str(err)


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, VALID, "good.toml")
    assert main(["check-config", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK {good}")
    assert "gateway gw-01" in out
    assert "source plc1: modbus 127.0.0.1:5020" in out
    assert "s3cret" not in out

    bad = write(
        tmp_path,
        VALID.replace('gateway = "gw-01"', 'gateway = "a/b"').replace("port = 5020", "port = 0"),
        "bad.toml",
    )
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "2 problems" in err
    assert "  gateway: " in err
    assert "  sources[0].port: " in err

    broken = write(tmp_path, "site = \n", "broken.toml")
    assert main(["check-config", str(broken)]) == 2
    assert "line 1" in capsys.readouterr().err


def test_env_json_replaces_a_list_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    signal = {"id": "only", "source": "plc1", "address": 9, "kind": "sensor"}
    monkeypatch.setenv("FLIGHTDECK_EDGE_SIGNALS", __import__("json").dumps([signal]))
    monkeypatch.setenv("FLIGHTDECK_EDGE_SPOOL__MAX_BYTES", "65536")
    cfg = load_config(write(tmp_path, VALID))
    assert [s.id for s in cfg.signals] == ["only"]
    assert cfg.spool.max_bytes == 65536


def test_new_sections_and_addressing_are_checked(tmp_path: Path) -> None:
    text = VALID.replace("address = 2\n", 'address = 2\nnode = "ns=2;s=x"\n')
    text += "\n[delivery]\nwindow = 5000\n"
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    found = problems(exc)
    assert "applies to opcua sources" in found["signals[1].node"]
    assert "exceeds broker.max_queued" in found["delivery.window"]
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, VALID + '\n[spool]\npolicy = "drop_random"\n'))
    assert "drop_oldest" in problems(exc)["spool.policy"]


def test_every_problem_is_listed_with_its_field_and_a_plain_message(tmp_path: Path) -> None:
    """msgspec stops at the first error; the validator walks every field to list them all."""
    text = (
        VALID.replace('gateway = "gw-01"', 'gateway = "gw-01"\nbogus = 1')
        .replace("port = 1883", 'port = 1883\nprotocol = "4"\nkeepalive_s = "x"')
        .replace("unit_id = 1", "unit_id = 300")
        .replace('kind = "stock_level"\nunit', 'kind = "stock"\nunit', 1)
        .replace("scale = 0.01", "scale = nan")
    )
    text += (
        '\n[[sources]]\ntype = "zigbee"\nid = "z"\n'
        '\n[[sources]]\nid = "notype"\n'
        '\n[[sources]]\ntype = "http"\nid = "mes"\nurl = "ftp://x"\n'
        'headers = { A = "ok", B = "bad\\u0001" }\nbearer_token = 5\n'
        '\n[[signals]]\nid = "c"\nsource = "mes"\nkind = "sensor"\nfield = "x"\n'
        "counter_bits = 12\nvalue_map = { a = inf }\n"
        '\n[spool]\npolicy = "drop_random"\nmax_bytes = 1.5\n'
        '\n[status]\nenabled = "maybe"\n'
    )
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    found = problems(exc)
    assert found == {
        "bogus": "Extra inputs are not permitted",
        "broker.protocol": "must be one of 'auto', '5', '3.1.1' (got '4')",
        "broker.keepalive_s": "must be an integer (got 'x')",
        "spool.max_bytes": "must be an integer (got 1.5)",
        "spool.policy": "must be one of 'drop_oldest', 'drop_newest' (got 'drop_random')",
        "status.enabled": "must be true or false (got 'maybe')",
        "sources[0].unit_id": "must be an integer <= 255 (got 300)",
        "sources[1].type": "must be one of 'modbus', 'opcua', 'http', 'csv' (got 'zigbee')",
        "sources[2].type": "Field required",
        "sources[3].url": "must be a string matching '^https?://[^\\\\s]+$' (got 'ftp://x')",
        "sources[3].headers.B": (
            "must be printable text, without control characters (got 'bad\\x01')"
        ),
        "sources[3].bearer_token": "must be a string (got int)",
        "signals[0].kind": (
            "must be one of 'stock_level', 'production_count', 'consumption', 'sensor'"
            " (got 'stock')"
        ),
        "signals[1].scale": "must be a finite number (got nan)",
        "signals[2].counter_bits": "must be one of 16, 32, 64 (got 12)",
        "signals[2].value_map.a": "must be a finite number (got inf)",
    }


def test_checks_across_fields_are_named_by_field(tmp_path: Path) -> None:
    text = VALID.replace("port = 1883", "port = 1883\nreconnect_min_s = 10\nreconnect_max_s = 5")
    text = text.replace('location = "WH1"', 'location = "WH1"\ncounter_max_step = 5.0')
    text += "\n[delivery]\nresend_after_s = 100\nresend_max_s = 50\n"
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    assert problems(exc) == {
        "broker.reconnect_max_s": "must be >= reconnect_min_s",
        "signals[0].counter_max_step": "needs counter_bits",
        "delivery.resend_max_s": "must be >= resend_after_s",
    }
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, VALID.replace("[[signals]]", "[[signalz]]")))
    assert problems(exc)["signals"] == "Field required"
    with pytest.raises(ConfigError) as exc:
        config_from_mapping({**parse_toml(VALID), "sources": []}, use_env=False)
    assert problems(exc)["sources"] == "needs at least 1 entry"


def test_secrets_of_sources_stay_out_of_repr_and_hash(tmp_path: Path) -> None:
    text = VALID + (
        '\n[[sources]]\ntype = "http"\nid = "mes"\nurl = "http://mes/x"\nbearer_token = "tok-1"\n'
    )
    cfg = load_config(write(tmp_path, text, "a.toml"))
    mes = cfg.source("mes")
    assert isinstance(mes, HttpSourceConfig)
    assert mes.bearer_token is not None
    assert mes.bearer_token.get_secret_value() == "tok-1"
    assert "tok-1" not in repr(cfg)
    other = load_config(write(tmp_path, text.replace("tok-1", "tok-2"), "b.toml"))
    assert other.config_hash() == cfg.config_hash()  # published: the token is not in it
    assert other != cfg  # but a reload sees the change

"""Configuration that is wrong in shapes the schema does not expect: a ``type`` that is a list or
a table, HTTP sources whose URL or headers no request can carry, and a reload (SIGHUP) of such a
file, which must leave the running agent as it was."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import runner
from edge_agent.cli import main
from edge_agent.config import DataType, config_from_mapping
from edge_agent.errors import ConfigError
from edge_agent.sources.http_client import HttpGetClient

GOOD = """\
site = "s"
gateway = "g"
[[sources]]
type = "modbus"
id = "plc"
host = "127.0.0.1"
[[signals]]
id = "a"
source = "plc"
kind = "sensor"
address = 0
"""


def base(**source: Any) -> dict[str, Any]:
    return {
        "site": "s1",
        "gateway": "gw-01",
        "sources": [{"type": "http", "id": "mes", "url": "http://mes.local/x", **source}],
        "signals": [{"id": "a", "source": "mes", "kind": "sensor", "field": "a"}],
    }


def issues(values: dict[str, Any]) -> dict[str | None, str]:
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(values, use_env=False)
    return {issue.field: issue.message for issue in exc.value.issues}


# -- the source discriminator -----------------------------------------------------------------


@pytest.mark.parametrize("tag", [["modbus"], {"name": "modbus"}, 3, True])
def test_a_type_that_is_not_a_string_is_a_field_problem(tag: object) -> None:
    values = base()
    values["sources"][0]["type"] = tag
    found = issues(values)
    assert list(found) == ["sources[0].type"]
    assert "must be a string, one of 'modbus', 'opcua', 'http', 'csv'" in found["sources[0].type"]


def test_check_config_reports_a_list_type_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(GOOD.replace('type = "modbus"', 'type = ["modbus"]'))
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "sources[0].type: must be a string" in done.stderr


def test_check_config_turns_an_unexpected_error_into_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(path: str) -> None:
        raise RuntimeError("validator bug")

    monkeypatch.setattr("edge_agent.cli.load_config", broken)
    assert main(["check-config", str(tmp_path / "x.toml")]) == 1
    err = capsys.readouterr().err
    assert "cannot be checked: RuntimeError: validator bug" in err
    assert "Traceback" not in err


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
toml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
source_keys = st.sampled_from(["type", "id", "host", "url", "path", "port", "headers", "mode"])


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(source_keys, toml_values | st.sampled_from(["modbus", "http", "csv"])),
    st.dictionaries(st.sampled_from(["id", "source", "kind", "address", "field"]), toml_values),
)
def test_any_shape_of_source_or_signal_is_a_config_error_or_a_config(
    source: dict[str, Any], signal: dict[str, Any]
) -> None:
    values = {"site": "s", "gateway": "g", "sources": [source], "signals": [signal]}
    try:
        config_from_mapping(values, use_env=False)
    except ConfigError as exc:
        assert exc.issues
        assert all(issue.field for issue in exc.issues)


# -- HTTP sources that no request could be made for --------------------------------------------


@pytest.mark.parametrize(
    ("source", "field", "words"),
    [
        ({"url": "http://mes.local:99999/x"}, "sources[0].url", "Port out of range"),
        ({"url": "http://mes.local:0/x"}, "sources[0].url", "port must be 1..65535"),
        ({"url": "http://mes.local:8o/x"}, "sources[0].url", "not a usable URL"),
        ({"url": "http://[::1/x"}, "sources[0].url", "Invalid IPv6 URL"),
        ({"url": "http://:80/x"}, "sources[0].url", "names no host"),
        ({"url": "http://mes.local/€"}, "sources[0].url", "printable ASCII"),
        ({"url": "http://mes.local/\x00"}, "sources[0].url", "printable ASCII"),
        ({"url": "http://mes.local/x\n"}, "sources[0].url", "printable ASCII"),
        ({"headers": {"X-Token": "abc€"}}, "sources[0].headers.X-Token", "Latin-1"),
        ({"headers": {"Bad Name:\r\nX": "v"}}, "sources[0].headers", "not a header name"),
        ({"headers": {"X Y": "v"}}, "sources[0].headers", "not a header name"),
        ({"headers": {"X-A\n": "v"}}, "sources[0].headers", "not a header name"),
        ({"headers": {"": "v"}}, "sources[0].headers", "not a header name"),
        ({"bearer_token": "t€k"}, "sources[0].bearer_token", "printable Latin-1"),
        ({"bearer_token": "t\r\nX: 1"}, "sources[0].bearer_token", "printable Latin-1"),
    ],
)
def test_http_urls_and_headers_no_request_can_carry_are_refused(
    source: dict[str, Any], field: str, words: str
) -> None:
    found = issues(base(**source))
    assert list(found) == [field]
    assert words in found[field]


@pytest.mark.parametrize("url", ["opc.tcp://plc.local:4840\n", "opc.tcp://plc.local:4840 x"])
def test_an_opc_ua_url_with_a_trailing_newline_or_space_is_refused(url: str) -> None:
    values = base()
    values["sources"] = [{"type": "opcua", "id": "o", "url": url}]
    values["signals"] = [{"id": "s", "source": "o", "node": "ns=2;i=1", "kind": "sensor"}]
    assert list(issues(values)) == ["sources[0].url"]


def test_secret_values_stay_out_of_the_messages() -> None:
    found = issues(base(headers={"X-Token": "s3cr€t"}, bearer_token="t0k€n"))
    text = " ".join(found.values())
    assert "s3cr" not in text
    assert "t0k" not in text


def test_usable_http_sources_still_pass() -> None:
    cfg = config_from_mapping(
        base(
            url="https://[fe80::1]:8443/api/v1/lines/3?x=1&y=%C3%A9",
            headers={"X-Api-Key": "k€y".replace("€", "é"), "Accept": "application/json"},
            bearer_token="abc.def-ghi",
        ),
        use_env=False,
    )
    assert cfg.sources[0].type == "http"


url_parts = st.text(alphabet="abc019:/[]?#%@.-_~é€ \t", max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["http://", "https://", "ftp://", "http:/"]),
    url_parts,
    st.dictionaries(
        st.text(alphabet="Ab-:\r\n é", min_size=0, max_size=4),
        st.text(alphabet="ab \r\n\x7fé€", max_size=4),
        max_size=2,
    ),
)
def test_every_http_source_the_config_accepts_can_make_its_request(
    scheme: str, rest: str, headers: dict[str, str]
) -> None:
    try:
        cfg = config_from_mapping(base(url=scheme + rest, headers=headers), use_env=False)
    except ConfigError:
        return
    source = cfg.sources[0]
    assert source.type == "http"
    HttpGetClient(source.url, headers=source.headers)  # must not raise


# -- int32 registers ---------------------------------------------------------------------------


def test_int32_is_a_two_register_data_type(tmp_path: Path) -> None:
    values = base()
    values["sources"] = [{"type": "modbus", "id": "mes", "host": "127.0.0.1"}]
    values["signals"] = [
        {"id": "a", "source": "mes", "kind": "sensor", "address": 65534, "data_type": "int32"}
    ]
    cfg = config_from_mapping(values, use_env=False)
    assert cfg.signals[0].data_type is DataType.INT32
    values["signals"][0]["address"] = 65535  # its second register would be 65536
    assert "ends past 65535" in issues(values)["signals[0].address"]


# -- reload (SIGHUP) ---------------------------------------------------------------------------


async def reload_once(
    agent: object, path: Path, caplog: pytest.LogCaptureFixture
) -> list[logging.LogRecord]:
    """Run the runner's serve loop, trigger one reload, stop it; the records it logged."""
    stop, reload = asyncio.Event(), asyncio.Event()
    caplog.set_level(logging.INFO, "edge_agent.runner")
    task = asyncio.create_task(runner._serve(agent, stop, reload, path))  # type: ignore[arg-type]
    reload.set()
    for _ in range(500):
        if any("reload" in r.getMessage() for r in caplog.records) or task.done():
            break
        await asyncio.sleep(0.01)
    assert not task.done(), "the serve loop ended: a reload stopped the agent"
    stop.set()
    await asyncio.wait_for(task, 5)  # ends cleanly, does not raise
    return [r for r in caplog.records if r.name == "edge_agent.runner"]


async def test_a_reload_with_a_list_type_keeps_the_agent_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(GOOD.replace('type = "modbus"', 'type = ["modbus"]'))
    (record,) = await reload_once(object(), path, caplog)
    assert record.levelno == logging.ERROR
    assert "reload refused, keeping the running configuration" in record.getMessage()
    assert "sources[0].type" in record.getMessage()


async def test_an_unexpected_error_while_loading_keeps_the_agent_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path) -> None:
        raise RuntimeError("loader bug")

    monkeypatch.setattr(runner, "load_config", broken)
    (record,) = await reload_once(object(), tmp_path / "edge.toml", caplog)
    assert record.levelno == logging.ERROR
    assert "keeping the running configuration" in record.getMessage()
    assert record.exc_info is not None  # a bug: logged with its traceback, once


async def test_an_error_while_applying_a_reload_keeps_the_agent_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(GOOD)
    applied: list[object] = []

    async def failing_apply(agent: object, new: object) -> None:
        applied.append(new)
        raise RuntimeError("apply bug")

    apply: Callable[[object, object], Awaitable[None]] = failing_apply
    monkeypatch.setattr(runner, "apply_reload", apply)
    (record,) = await reload_once(object(), path, caplog)
    assert applied  # the file was valid and loaded
    assert "the agent keeps running" in record.getMessage()


async def test_a_reload_whose_new_source_cannot_be_built_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source builder is made to fail for one id (a stand-in for a source whose
    construction raises): the running pollers and configuration stay as they were."""
    from edge_agent import polling  # noqa: PLC0415
    from edge_agent.agent import Agent  # noqa: PLC0415
    from edge_agent.spool.store import SpoolStore  # noqa: PLC0415

    def values(*ids: str) -> dict[str, Any]:
        return {
            "site": "p",
            "gateway": "gw",
            "spool": {"path": str(tmp_path / "spool.db")},
            "status": {"enabled": False},
            "sources": [{"type": "modbus", "id": i, "host": "127.0.0.1", "port": 1} for i in ids],
            "signals": [
                {"id": f"{i}-s", "source": i, "address": 0, "kind": "sensor", "period_s": 60}
                for i in ids
            ],
        }

    old = config_from_mapping(values("plc1"), use_env=False)
    agent = Agent(old, store=SpoolStore(old.spool_path), boot="b1", started_ms=1)
    agent.start_polling()
    running = agent.pollers["plc1"]
    real = polling.build_source

    def build(config: Any, signals: Any) -> Any:
        if config.id == "plc2":
            raise RuntimeError("cannot build plc2")
        return real(config, signals)

    monkeypatch.setattr(polling, "build_source", build)
    changed = values("plc1", "plc2")
    changed["sources"][0]["port"] = 2  # plc1 would be restarted, plc2 added
    with pytest.raises(RuntimeError, match="plc2"):
        await runner.apply_reload(agent, config_from_mapping(changed, use_env=False))
    assert agent.config is old
    assert agent.pollers == {"plc1": running}
    assert running._task is not None
    assert not running._task.done()  # still polling
    await agent.stop_polling()
    agent.store.close()

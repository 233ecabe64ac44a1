"""The agent's version, read from the installed distribution's METADATA without importlib."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from edge_agent.version import agent_version, version_from


def test_matches_importlib_metadata() -> None:
    assert version_from(sys.path) == metadata.version("flightdeck")
    assert agent_version() == metadata.version("flightdeck")


def test_first_match_on_the_path_wins_and_headers_end_at_the_blank_line(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for where, version in ((first, "1.2.3"), (second, "9.9.9")):
        info = where / "flightdeck-x.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.4\nName: flightdeck\nVersion: {version}\n\nVersion: 0\n"
        )
    (tmp_path / "c" / "flightdeck_other-1.dist-info").mkdir(parents=True)
    assert version_from([str(tmp_path / "missing"), str(first), str(second)]) == "1.2.3"
    assert version_from([str(tmp_path / "c")]) is None
    (first / "flightdeck-x.dist-info" / "METADATA").write_text("Name: flightdeck\n\nVersion: 2\n")
    assert version_from([str(first)]) is None

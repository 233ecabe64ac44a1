"""Both services together, for the demo and benchmarks (tests use the fixtures).

Keeping the demo on the same code path as the tests means the demo cannot
drift into relying on a hand-configured system broker or database.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from .influxd import InfluxServer
from .mosquitto import MosquittoOptions, MosquittoServer


class LocalStack:
    """Mosquitto + influxd in ``workdir`` (a fresh temporary folder by default).

    A temporary folder created here is deleted on exit unless ``keep=True``
    (handy for reading the logs after a failed demo run); a folder passed in
    is never deleted.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        mosquitto_options: MosquittoOptions | None = None,
        influx_auth: bool = False,
        keep: bool = False,
    ) -> None:
        self._owns_workdir = workdir is None
        self.keep = keep
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="flightdeck-stack-")) if workdir is None else workdir
        )
        self.mosquitto = MosquittoServer(self.workdir / "mosquitto", mosquitto_options)
        self.influx = InfluxServer(self.workdir / "influxd", auth=influx_auth)

    @property
    def mqtt_host(self) -> str:
        return self.mosquitto.host

    @property
    def mqtt_port(self) -> int:
        return self.mosquitto.port

    @property
    def influx_url(self) -> str:
        return self.influx.url

    def start(self, timeout: float = 30.0) -> None:
        """Start both; if the second fails, the first is stopped again."""
        try:
            self.mosquitto.start(timeout)
            self.influx.start(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop both (idempotent); stops influxd even if Mosquitto's stop fails."""
        try:
            self.mosquitto.stop()
        finally:
            self.influx.stop()

    def cleanup(self) -> None:
        """Stop and, if the folder was created here and not kept, delete it."""
        self.stop()
        if self._owns_workdir and not self.keep:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(self.workdir)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

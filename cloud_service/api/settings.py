"""``[api]`` settings of the REST API: a pydantic section, passed in like every other."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ApiSettings(BaseModel):
    """Where the REST API listens and whether reading needs a key.

    ``port = 0`` picks a free port (tests, several workers on one host); the bound port is
    then :attr:`cloud_service.api.server.ApiServer.port`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    #: Read endpoints (alerts, plans, status, the stream) without a key: for a trusted network
    #: only. Acting always needs an ``ack`` or ``admin`` key.
    allow_unauthenticated_read: bool = False

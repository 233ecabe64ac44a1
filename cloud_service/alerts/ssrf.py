"""An httpx transport that connects only to addresses it has checked (SSRF guard).

A webhook URL is user input: pointed at ``127.0.0.1``, ``169.254.169.254`` (cloud metadata) or
an internal service, it would make the cloud service attack its own network. The guard
resolves the host itself, refuses the request if any resolved address is not globally
routable (loopback, private, link-local, unique-local ``fc00::/7``, CGNAT, multicast,
reserved; IPv6 forms that embed an IPv4 address (IPv4-mapped and -translated, -compatible,
6to4, NAT64 ``64:ff9b::/96``) are judged by that IPv4 address) unless it lies in an explicitly
allowed network, and then connects to that very address: the URL's host is replaced by the
IP, while the ``Host`` header and the TLS SNI/certificate check keep the name. A second DNS
answer (rebinding) is never asked for. Redirects are the client's business: ours follows none.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import httpx

from cloud_service.alerts.errors import AddressRefused, DeliveryError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    allow: tuple[IPNetwork, ...] = ()

    @classmethod
    def allowing(cls, networks: Sequence[str | IPNetwork]) -> AddressPolicy:
        return cls(tuple(ipaddress.ip_network(n) for n in networks))

    def refusal(self, address: IPAddress) -> str | None:
        """Why this address is refused, or None when it may be contacted."""
        ip = _unwrap(address)
        if any(ip in net or address in net for net in self.allow):
            return None
        checks = (
            (ip.is_loopback, "loopback"),
            (ip.is_link_local, "link-local (cloud metadata lives here)"),
            (ip.is_multicast, "multicast"),
            (ip.is_unspecified, "unspecified"),
            (not ip.is_global, "private or reserved"),
        )
        return next((why for bad, why in checks if bad), None)


#: IPv6 prefixes whose last 32 bits are an IPv4 address the packet ends up at: NAT64's
#: well-known prefix (RFC 6052; a NAT64 gateway forwards to the IPv4 address), IPv4-translated
#: (SIIT, RFC 2765) and the deprecated IPv4-compatible form (RFC 4291), which some stacks still
#: route to the IPv4 address. (IPv4-mapped ``::ffff:0:0/96`` and 6to4 are unwrapped by
#: ``ipaddress`` itself; the local-use NAT64 prefix ``64:ff9b:1::/48`` is non-global as is.)
_EMBEDDING: Final = tuple(
    ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "::ffff:0:0:0/96", "::/96")
)


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address embeds and leads to, else the address itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.is_unspecified or ip.is_loopback:  # "::" and "::1" are no IPv4-compatible forms
            return ip
        if any(ip in net for net in _EMBEDDING):
            return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    return ip


class GuardedTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolver = system_resolver,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = inner or httpx.AsyncHTTPTransport(retries=0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host = url.host
        if url.scheme not in ("http", "https") or not host:
            raise AddressRefused(f"refused URL {url}", recipient=host, host=host, address="")
        ip = await self.check(host, url.port or (443 if url.scheme == "https" else 80))
        extensions = dict(request.extensions)
        if url.scheme == "https":
            extensions["sni_hostname"] = host
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=str(ip)),
            headers=request.headers,  # keeps Host: the name, not the IP
            stream=request.stream,
            extensions=extensions,
        )
        return await self.inner.handle_async_request(pinned)

    async def check(self, host: str, port: int) -> IPAddress:
        """The address to connect to, or :class:`AddressRefused`."""
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                answers = await self.resolver(host, port)
            except OSError as exc:
                raise DeliveryError(
                    f"cannot resolve {host}: {exc}", channel="webhook", recipient=host,
                    retryable=True,
                ) from exc  # fmt: skip
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in answers]
        if not addresses:
            raise DeliveryError(
                f"{host} has no address", channel="webhook", recipient=host, retryable=True
            )
        for ip in addresses:
            why = self.policy.refusal(ip)
            if why is not None:
                raise AddressRefused(
                    f"refused to connect to {host} ({ip}): {why}; allow it explicitly if intended",
                    recipient=host, host=host, address=str(ip),
                )  # fmt: skip
        return addresses[0]

    async def aclose(self) -> None:
        await self.inner.aclose()

"""What the network did: which addresses a fetch may connect to, whether a failure reached any host, and
whether the network is there at all.

A dataset CSV is often someone else's file, so its urls may point at this machine or the local network
(a router's admin page, a cloud metadata service). `guard_connections` checks every address a connection
is about to use, after DNS resolution and for every redirect, in the process that connects (the fetch
worker), so a name that resolves to a public address once and a private one later gains nothing.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

SETTING = "download.allow_private_networks"
SHARED_NETWORK = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
NAT64_NETWORK = ipaddress.ip_network("64:ff9b::/96")  # IPv4 addresses seen from an IPv6-only network
UNREACHABLE_ERRNOS = {
    errno.ENETUNREACH: "network unreachable (no network?)",
    errno.ENETDOWN: "network is down (no network?)",
    errno.EHOSTUNREACH: "host unreachable",
    errno.EHOSTDOWN: "host is down",
}

# What one attempt tells about the network.
REACHED = "reached"  # a host answered (a video, an HTTP error, a page): the network works
UNREACHABLE = "unreachable"  # no host was reached: name resolution failed, connection refused or unroutable
UNKNOWN = "unknown"  # says nothing either way (refused by policy before connecting, cut off by a time limit)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class PrivateAddressError(OSError):
    """A connection refused before it was made: the host resolves to an address the settings do not allow.

    An OSError, so the HTTP libraries under yt-dlp report it like any failed connection."""


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address in NAT64_NETWORK:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_kind(address: Address) -> str | None:
    """None for a public address, else what it is (loopback, private, ...), for a reason a person can read."""
    inner = embedded_ipv4(address)
    if inner is not None:
        return address_kind(inner)
    if address.is_global and not address.is_multicast:
        return None
    for kind, test in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("shared (carrier-grade NAT)", address in SHARED_NETWORK),
        ("private", address.is_private),
    ):
        if test:
            return kind
    return "non-public"


def parse_address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return None


@dataclass(frozen=True)
class AddressPolicy:
    """Public addresses always; private ones when `allow` is true, or when inside one of the `allow` networks."""

    allow: bool | tuple[str, ...] = False

    def refusal(self, host: str, addresses: list[str]) -> str | None:
        """Why connecting to `host` (resolved to `addresses`) is refused, or None: one bad address refuses all."""
        if self.allow is True:
            return None
        networks = [ipaddress.ip_network(net) for net in self.allow or ()]
        for text in addresses:
            address = parse_address(text)
            if address is None:
                continue
            kind = address_kind(address)
            candidates = [address, embedded_ipv4(address)]
            if kind is None or any(a is not None and a in net for a in candidates for net in networks):
                continue
            setting = f"not in {SETTING}" if networks else f"{SETTING} is off"
            article = "an" if kind[0] in "aeiou" else "a"
            if parse_address(host) is not None:
                return f"refused: {host} is {article} {kind} address ({setting})"
            return f"refused: {host} resolves to {article} {kind} address {address} ({setting})"
        return None


# A reason `AddressPolicy.refusal` wrote: the host, and the address it resolved to when it is a name.
REFUSAL = re.compile(
    rf"^refused: (?P<host>\S+) (?:is an? .+? address|resolves to an? .+? address (?P<address>\S+)) "
    rf"\((?:{re.escape(SETTING)} is off|not in {re.escape(SETTING)})\)$"
)


def refused_address(reason: str) -> tuple[str, str] | None:
    """(host, address) of a connection the policy refused, read from the reason it left in videos.csv; None
    for any other reason. A refusal is a fact about the setting, not the video: the download judges it again."""
    found = REFUSAL.match(reason)
    if found is None:
        return None
    return found["host"], found["address"] or found["host"]


_guard_lock = threading.Lock()
_policy: AddressPolicy | None = None
_trusted_hosts: frozenset[str] = frozenset()
_resolve: Callable[..., list] = socket.getaddrinfo


def guarded_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list:
    """socket.getaddrinfo, refusing hosts that resolve to an address the policy does not allow."""
    results = _resolve(host, port, *args, **kwargs)
    name = host.decode() if isinstance(host, bytes) else str(host)
    if _policy is not None and name not in _trusted_hosts:
        reason = _policy.refusal(name, [str(result[4][0]) for result in results])
        if reason:
            raise PrivateAddressError(reason)
    return results


def guard_connections(policy: AddressPolicy) -> None:
    """Check every address this process connects to from now on (every library resolves through
    socket.getaddrinfo). Proxies the environment configures are the user's own choice and stay allowed;
    behind such a proxy, the proxy resolves and connects, so it is the proxy that must refuse private hosts."""
    global _policy, _trusted_hosts
    with _guard_lock:
        _policy = policy
        _trusted_hosts = frozenset(
            urlsplit(proxy if "://" in proxy else f"http://{proxy}").hostname or ""
            for proxy in urllib.request.getproxies().values()
        )
        socket.getaddrinfo = guarded_getaddrinfo


def error_chain(exc: BaseException) -> list[BaseException]:
    """The exception and what caused it, as yt-dlp and urllib3 nest them (exc_info, cause, reason, __cause__)."""
    chain: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or current in chain:
            continue
        chain.append(current)
        exc_info = getattr(current, "exc_info", None)
        todo += [exc_info[1] if isinstance(exc_info, tuple) else None, getattr(current, "cause", None)]
        todo += [getattr(current, "reason", None), current.__cause__, current.__context__]
    return chain


def failed_host(chain: list[BaseException], url: str) -> str:
    """The host a failed connection was for: urllib3 keeps it on the error, else the message names it."""
    for error in chain:
        host = getattr(getattr(error, "conn", None), "host", None)
        if isinstance(host, str) and host:
            return host
    for error in chain:
        found = re.search(r"host='([^']+)'", str(error))
        if found:
            return found.group(1)
    return urlsplit(url).hostname or url


def unreachable(exc: BaseException, url: str) -> tuple[str, str] | None:
    """(lead, detail) when `exc` failed before reaching any host, e.g. ("cannot resolve host
    www.youtube.com (no network?)", "[Errno -3] Temporary failure in name resolution"); else None."""
    chain = error_chain(exc)
    if any(isinstance(error, PrivateAddressError) for error in chain):
        return None
    host = failed_host(chain, url)
    for error in chain:
        if isinstance(error, socket.gaierror):
            return f"cannot resolve host {host} (no network?)", str(error)
        if isinstance(error, ConnectionRefusedError):
            return f"cannot connect to {host}: connection refused", str(error)
        if isinstance(error, OSError) and error.errno in UNREACHABLE_ERRNOS:
            return f"cannot connect to {host}: {UNREACHABLE_ERRNOS[error.errno]}", str(error)
    try:
        from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
    except ImportError:
        return None
    for error in chain:  # NewConnectionError is a ConnectTimeoutError too, for urllib3's backward compatibility
        if isinstance(error, ConnectTimeoutError) and not isinstance(error, NewConnectionError):
            return f"cannot connect to {host}: connection timed out", str(error)
    return None


def network_outcome(exc: BaseException, url: str) -> str:
    """REACHED, UNREACHABLE or UNKNOWN for a failed attempt."""
    if any(isinstance(error, PrivateAddressError) for error in error_chain(exc)):
        return UNKNOWN
    return UNREACHABLE if unreachable(exc, url) else REACHED


class NetworkHealth:
    """Whether the network is there: dead when the first `verdict_after` attempts all failed before
    reaching any host, alive as soon as one attempt reached one. Thread-safe; `on_dead` runs once."""

    def __init__(self, verdict_after: int, on_dead: Callable[[], None] = lambda: None) -> None:
        self.verdict_after = max(1, verdict_after)
        self.on_dead = on_dead
        self.unreachable = 0
        self.alive = False
        self.dead = False
        self.first_reason = ""
        self._lock = threading.Lock()

    def record(self, outcome: str, reason: str = "") -> None:
        with self._lock:
            if outcome == REACHED:
                self.alive = True
            elif outcome == UNREACHABLE:
                self.unreachable += 1
                self.first_reason = self.first_reason or reason
            died = not self.alive and not self.dead and self.unreachable >= self.verdict_after
            self.dead = self.dead or died
        if died:
            self.on_dead()

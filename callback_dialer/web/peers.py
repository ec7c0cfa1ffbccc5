"""Who is really asking, from where, and by which name they reached us.

- **Trusted proxies** (``[web] trusted_proxies``): a request's ``X-Forwarded-For``,
  ``X-Forwarded-Proto``, ``X-Forwarded-Host`` and the proxy's user header
  (``[web] proxy_user_header``) are believed only when the TCP peer is one of them; from anyone
  else they are ignored, so nobody can name themselves a user, another address or HTTPS. The
  client is the rightmost ``X-Forwarded-For`` entry that is not a trusted proxy (entries to
  its left were written by the client and prove nothing).
- **Allowed hosts** (``[web] allowed_hosts``): a browser tricked by DNS rebinding sends the
  attacker's name as ``Host``; any Host not allowed is refused before anything else, so such a
  page can neither read the page nor obtain a CSRF token. By default the page answers to the
  listen address and ``localhost``; listening on every interface (0.0.0.0, ::), also to this
  machine's names and to any IP address (a rebinding attack always uses a name: a page loaded
  from an IP address is that address's own origin).
"""

from __future__ import annotations

import ipaddress
import socket
from functools import cached_property

from aiohttp import web

from ..config import WebConfig
from .auth import request_key

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
CLIENT = request_key("client_address", str)
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("["):  # [v6]:port
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        found = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv4 address written as IPv6 (::ffff:1.2.3.4) is that IPv4 address.
    mapped = getattr(found, "ipv4_mapped", None)
    return mapped or found


def host_name(host: str) -> str:
    """The name in a Host header, without the port, lower case: ``[::1]:8080`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1 :] if end > 0 else "?"
        # Only "[v6]" or "[v6]:port": anything else stays whole, and is no host we answer to.
        return host[1:end] if rest == "" or (rest[:1] == ":" and rest[1:].isdigit()) else host
    if host.count(":") == 1:
        name, port = host.split(":", 1)
        if not port.isdigit():
            return host
        host = name
    return host.rstrip(".")


class Peers:
    def __init__(self, web: WebConfig) -> None:
        self.web = web
        self.proxies: list[IpNetwork] = [
            ipaddress.ip_network(p, strict=False) for p in web.trusted_proxies
        ]

    # ------------------------------------------------------------------ proxies

    def _is_proxy(self, address: str | None) -> bool:
        ip = _ip(address or "")
        return ip is not None and any(ip in net for net in self.proxies)

    def via_proxy(self, request: web.Request) -> bool:
        """The TCP peer is a trusted proxy: its forwarding headers are believed."""
        return self._is_proxy(request.remote)

    def client_address(self, request: web.Request) -> str:
        """The client's address: the peer's, or what the trusted proxies say it was."""
        found = request.get(CLIENT)
        if found is not None:
            return found
        address = request.remote or ""
        if self.via_proxy(request):
            hops = [
                hop.strip()
                for header in request.headers.getall("X-Forwarded-For", [])
                for hop in header.split(",")
            ]
            for hop in reversed(hops):
                ip = _ip(hop)
                if ip is None:
                    break  # a garbled chain: the last proxy we trust is all we know
                address = str(ip)
                if not any(ip in net for net in self.proxies):
                    break
        request[CLIENT] = address
        return address

    def forwarded(self, request: web.Request, header: str) -> str | None:
        """A forwarding header's first value, only from a trusted proxy."""
        if not self.via_proxy(request):
            return None
        value = request.headers.get(header)
        return value.split(",")[0].strip() if value is not None else None

    def secure(self, request: web.Request) -> bool:
        return request.secure or self.forwarded(request, "X-Forwarded-Proto") == "https"

    def host(self, request: web.Request) -> str:
        """The host and port the browser asked for (a trusted proxy may say it)."""
        return self.forwarded(request, "X-Forwarded-Host") or request.headers.get("Host", "")

    # ------------------------------------------------------------------ hosts

    @cached_property
    def _allowed(self) -> tuple[frozenset[str], tuple[str, ...], bool]:
        """(exact names and addresses, domains whose subdomains are allowed, any IP)."""
        configured = self.web.allowed_hosts
        if configured:
            exact = {h for h in configured if not h.startswith("*")}
            suffixes = tuple(h[1:] for h in configured if h.startswith("*."))
            return frozenset(exact), suffixes, False
        exact = {"localhost", "127.0.0.1", "::1", host_name(self.web.host)}
        wildcard = self.web.host in WILDCARD_HOSTS
        if wildcard:
            for name in (socket.gethostname(), socket.getfqdn()):
                exact.add(name.lower().rstrip("."))
        return frozenset(exact - {""}), (), wildcard

    def host_allowed(self, request: web.Request) -> bool:
        if "*" in self.web.allowed_hosts:
            return True
        raw = self.host(request)
        if not raw and "Host" not in request.headers:
            return True  # HTTP/1.0 without Host: no browser, no rebinding
        name = host_name(raw)
        exact, suffixes, any_ip = self._allowed
        ip = _ip(name if ":" not in name else f"[{name}]")
        if ip is not None:
            return any_ip or str(ip) in exact or name in exact
        return name in exact or any(name.endswith(s) for s in suffixes)

"""Guarded HTTP: the only way a primitive reaches the network.

Every hop of a request is checked against the template's `allowed_hosts` before it is made:

- the URL's scheme is http or https and its host is listed (a name exactly, case-insensitively;
  an IP literal as an address or inside a listed CIDR network);
- the host's name is resolved here, and every address it resolves to must be public: private,
  loopback, link-local, shared, reserved and multicast addresses are refused unless that address
  itself is listed (`127.0.0.1`, `10.0.0.0/8`);
- the connection goes to the checked address (the name travels in the Host header and as TLS
  SNI, and the server's certificate is verified against the name), so a DNS answer that changes
  between check and connect (DNS rebinding) cannot redirect it;
- redirects are not followed by the HTTP client: each `Location` is checked as a new hop;
- proxies from the environment are ignored, time is bounded and the body is read up to a cap.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import ssl
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from pydantic import AfterValidator

from grammar_ops.failures import TransientError
from grammar_ops.findings import HostNotAllowed, PrimitiveError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REDIRECT_STATUSES = {301, 302, 303, 307, 308}


_USERINFO = re.compile(r"(?<=://)[^/?#@\s]*@")


def redact_url(text: str) -> str:
    """`text` with the credentials of every URL in it (`http://user:pass@host/`) replaced.

    Every message, receipt and response record that names a URL goes through this.

        >>> redact_url("GET http://user:s3cret@api.example.com/x failed")
        'GET http://***@api.example.com/x failed'
    """
    return _USERINFO.sub("***@", text)


@dataclass(frozen=True)
class CheckedTarget:
    """A URL whose host passed the allow-list, with the address to connect to."""

    url: httpx.URL
    host: str
    address: IPAddress


@dataclass(frozen=True)
class GuardedResponse:
    """A response read within the size cap; `url` has its credentials redacted."""

    url: str
    status_code: int
    headers: Mapping[str, str]
    content: bytes


def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the system resolver; tests replace this function)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise PrimitiveError(f"cannot resolve host `{host}`: {error}") from None
    return sorted({str(info[4][0]) for info in infos})


def _parse_allowed(allowed_hosts: Collection[str]) -> tuple[set[str], list[IPNetwork]]:
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in allowed_hosts:
        text = entry.strip().lower().rstrip(".")
        try:
            networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
        except ValueError:
            names.add(text)
    return names, networks


def _as_address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known prefix: IPv4 in the last 32 bits
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # local-use translation (RFC 8215)
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d
_TEREDO = ipaddress.IPv6Network("2001::/32")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address carries (NAT64, 6to4, IPv4-compatible), and how."""
    if address in _NAT64:
        return "a NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return "a 6to4", address.sixtofour
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return "an IPv4-compatible", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _non_public(address: IPAddress) -> str | None:
    """Why `address` is not a public address ("a private address"), or None when it is public.

    IPv6 addresses that carry an IPv4 address are judged by it; Teredo, local-use NAT64 and
    site-local addresses are never public.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address in _TEREDO:
            return "a Teredo address"
        if address in _NAT64_LOCAL:
            return "a local-use NAT64 address"
        if address.is_site_local:
            return "a site-local address"
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            how, ipv4 = embedded
            reason = _non_public(ipv4)
            return f"{how} address of {ipv4}, {reason}" if reason else None
    if address.is_global:
        return None
    return f"{_describe(address)} address"


def _describe(address: IPAddress) -> str:
    for label, flag in (
        ("a loopback", address.is_loopback),
        ("a link-local", address.is_link_local),
        ("a private", address.is_private),
        ("a multicast", address.is_multicast),
        ("an unspecified", address.is_unspecified),
        ("a reserved", address.is_reserved),
    ):
        if flag:
            return label
    return "a non-public"


def check_target(url: httpx.URL | str, allowed_hosts: Collection[str]) -> CheckedTarget:
    """Check one hop against the allow-list and resolve the address to connect to.

    Raises:
        HostNotAllowed: the scheme, host or a resolved address is not allowed.
    """
    url = httpx.URL(url)
    listed = ", ".join(sorted(allowed_hosts)) or "none"
    if url.scheme not in {"http", "https"}:
        raise HostNotAllowed(f"URL scheme `{url.scheme}` is not allowed; use http or https")
    host = url.host.lower().rstrip(".")
    if not host:
        raise HostNotAllowed(f"URL `{redact_url(str(url))}` has no host")
    names, networks = _parse_allowed(allowed_hosts)
    literal = _as_address(host)
    if literal is not None:
        if not any(literal in network for network in networks):
            raise HostNotAllowed(
                f"address `{host}` is not in allowed_hosts ({listed}); list it in the "
                "template's `allowed_hosts` to reach it"
            )
        return CheckedTarget(url, host, literal)
    if host not in names:
        raise HostNotAllowed(
            f"host `{host}` is not in allowed_hosts ({listed}); list it in the template's "
            "`allowed_hosts` to reach it"
        )
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = [a for a in (_as_address(text) for text in resolve_host(host, port)) if a]
    if not addresses:
        raise PrimitiveError(f"host `{host}` resolved to no usable address")
    for address in addresses:
        reason = _non_public(address)
        if reason and not any(address in network for network in networks):
            raise HostNotAllowed(
                f"host `{host}` resolves to {address}, {reason}; private, loopback and "
                "link-local addresses are reachable only when the address itself is listed in "
                f"allowed_hosts (add `{address}` to reach it)"
            )
    return CheckedTarget(url, host, addresses[0])


def guarded_request(
    method: str,
    url: str,
    *,
    allowed_hosts: Collection[str],
    timeout_s: float,
    max_bytes: int,
    max_redirects: int = 0,
    json_body: Any = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> GuardedResponse:
    """Make an HTTP request that can only reach allowed hosts (see the module docstring).

    Redirects are followed (up to `max_redirects`, GET only) by checking each hop here. A
    response larger than `max_bytes` fails the request. Certificates are always verified, against
    the bundle at `SSL_CERT_FILE` when it is set (a deployment's private CA), else certifi's.

    Raises:
        HostNotAllowed: a hop is outside the allow-list.
        TransientError: a timeout or a connection failure (retrying may fix it).
        PrimitiveError: too many redirects or an oversized body.
    """
    if json_body is not None:
        content = json.dumps(json_body, default=str, ensure_ascii=False).encode("utf-8")
    started = time.monotonic()
    current = httpx.URL(url)
    with httpx.Client(follow_redirects=False, trust_env=False, verify=_tls()) as client:
        for _hop in range(max_redirects + 1):
            target = check_target(current, allowed_hosts)
            remaining = timeout_s - (time.monotonic() - started)
            if remaining <= 0:
                raise TransientError(f"request to `{target.host}` ran past {timeout_s} s")
            response = _send(client, method, target, content, headers or {}, remaining, max_bytes)
            location = response.headers.get("location")
            if response.status_code in REDIRECT_STATUSES and location and method == "GET":
                current = current.join(location)
                continue
            return response
    raise PrimitiveError(
        f"`{redact_url(url)}` redirected more than {max_redirects} time(s); raise max_redirects "
        "or use the final URL"
    )


def _tls() -> ssl.SSLContext | bool:
    """The CAs to trust: `SSL_CERT_FILE`'s bundle when set, else httpx's default (certifi).

    The client runs with trust_env=False, which keeps proxies from the environment out and would
    also ignore SSL_CERT_FILE; it is read here instead.
    """
    bundle = os.environ.get("SSL_CERT_FILE")
    if not bundle:
        return True
    try:
        return ssl.create_default_context(cafile=bundle)
    except (OSError, ssl.SSLError) as error:
        raise PrimitiveError(
            f"SSL_CERT_FILE={bundle} could not be loaded ({error}); point it at a PEM bundle of "
            "trusted certificate authorities, or unset it"
        ) from None


def _send(
    client: httpx.Client,
    method: str,
    target: CheckedTarget,
    content: bytes | None,
    headers: Mapping[str, str],
    timeout_s: float,
    max_bytes: int,
) -> GuardedResponse:
    host_header = target.url.netloc.decode("ascii").rsplit("@", 1)[-1]
    pinned = target.url.copy_with(host=str(target.address))
    extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
    request_headers = {**headers, "Host": host_header}
    if content is not None:
        request_headers.setdefault("Content-Type", "application/json")
    try:
        with client.stream(
            method,
            pinned,
            content=content,
            headers=request_headers,
            timeout=httpx.Timeout(timeout_s),
            extensions=extensions,
        ) as response:
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise PrimitiveError(_too_large(target, max_bytes))
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise PrimitiveError(_too_large(target, max_bytes))
            return GuardedResponse(
                url=redact_url(str(target.url)),
                status_code=response.status_code,
                headers=dict(response.headers),
                content=bytes(body),
            )
    except httpx.TimeoutException:
        raise TransientError(
            f"request to `{target.host}` timed out after {timeout_s:.1f} s"
        ) from None
    except httpx.HTTPError as error:
        raise TransientError(
            f"request to `{target.host}` failed: {redact_url(str(error))}"
        ) from None


def _too_large(target: CheckedTarget, max_bytes: int) -> str:
    return f"response from `{target.host}` is larger than max_bytes={max_bytes}; raise the cap"


def check_http_url(url: str) -> str:
    """`url` when it is an http(s) URL; the host itself is checked when a request is made."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("url must start with http:// or https://")
    return url


HttpUrl = Annotated[str, AfterValidator(check_http_url)]
"""A config field holding an http(s) URL for a guarded request."""

"""No primitive reaches a host outside the allow-list: names, IP literals, DNS, redirects."""

from __future__ import annotations

import pytest

from grammar_ops import PrimitiveError, network, standard_catalog
from grammar_ops.findings import HostNotAllowed
from grammar_ops.network import check_target

LOOPBACK = frozenset({"127.0.0.1"})


def fetch(url, ctx, **config):
    return standard_catalog().resolve("acquire.http_json", {"url": url, **config}).run(None, ctx)


def network_primitives():
    catalog = standard_catalog()
    return sorted(n for n, p in catalog.primitives.items() if "url" in p.Config.model_fields)


def test_the_network_primitives_are_known():
    assert network_primitives() == ["acquire.http_json", "emit.webhook"]


@pytest.mark.parametrize("name", network_primitives())
@pytest.mark.parametrize(
    ("allowed", "host"),
    [
        (frozenset(), "127.0.0.1"),  # nothing listed
        (frozenset({"example.com"}), "127.0.0.1"),  # IP literal not listed
        (LOOPBACK, "localhost"),  # a name for a listed address is not listed itself
        (frozenset({"localhost"}), "localhost"),  # listed name resolving to loopback
        (frozenset({"127.0.0.2"}), "127.0.0.1"),  # a neighbouring address
    ],
)
def test_every_network_primitive_refuses_unlisted_hosts(name, allowed, host, make_ctx, http_server):
    url = f"http://{host}:{http_server.port}/data"
    composition = standard_catalog().resolve(name, {"url": url})
    with pytest.raises(HostNotAllowed):
        composition.run({"payload": 1}, make_ctx(allowed_hosts=allowed))
    assert http_server.received == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://127.1/",
        "http://[fe80::1]/",
    ],
)
def test_private_ip_literals_are_refused(url):
    with pytest.raises(HostNotAllowed):
        check_target(url, {"example.com", "api.example.com"})


def test_listed_addresses_and_networks_are_allowed():
    assert str(check_target("http://10.1.2.3/x", {"10.0.0.0/8"}).address) == "10.1.2.3"
    assert str(check_target("http://[::ffff:127.0.0.1]/", LOOPBACK).address) == "127.0.0.1"


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://x/"])
def test_other_schemes_are_refused(url):
    with pytest.raises(HostNotAllowed, match="scheme"):
        check_target(url, {"example.com", "x"})


def test_dns_names_resolving_to_private_addresses_are_refused(monkeypatch):
    answers = {"api.partner.test": ["10.1.2.3"], "mixed.test": ["93.184.216.34", "127.0.0.1"]}
    monkeypatch.setattr(network, "resolve_host", lambda host, port: answers[host])
    with pytest.raises(HostNotAllowed, match="resolves to 10.1.2.3, a private address"):
        check_target("https://api.partner.test/v1", {"api.partner.test"})
    with pytest.raises(HostNotAllowed, match="resolves to 127.0.0.1, a loopback address"):
        check_target("https://mixed.test/", {"mixed.test"})
    allowed = check_target("https://api.partner.test/v1", {"api.partner.test", "10.1.2.3"})
    assert str(allowed.address) == "10.1.2.3"


def test_public_dns_answer_is_allowed(monkeypatch):
    monkeypatch.setattr(network, "resolve_host", lambda host, port: ["93.184.216.34"])
    target = check_target("https://API.Example.com./v1", {"api.example.com"})
    assert target.host == "api.example.com" and str(target.address) == "93.184.216.34"


def test_connection_goes_to_the_checked_address(monkeypatch, make_ctx, http_server):
    """DNS rebinding cannot swap the address: the name is resolved once and the IP is dialled."""
    lookups = []

    def rebinding_resolver(host, port):
        lookups.append(host)
        return ["127.0.0.1"] if len(lookups) == 1 else ["10.9.9.9"]

    monkeypatch.setattr(network, "resolve_host", rebinding_resolver)
    ctx = make_ctx(allowed_hosts=frozenset({"app.test", "127.0.0.1"}))
    answer = fetch(f"http://app.test:{http_server.port}/host", ctx).value
    assert answer == {"host": f"app.test:{http_server.port}"}
    assert lookups == ["app.test"]


def test_redirects_are_rechecked_hop_by_hop(make_ctx, http_server):
    ctx = make_ctx(allowed_hosts=LOOPBACK)
    port = http_server.port
    followed = fetch(http_server.url("/redirect?to=/data"), ctx, select="count").value
    assert followed == 2000
    for target in (
        f"http://localhost:{port}/data",
        "http://10.0.0.1/data",
        "http://169.254.169.254/latest/meta-data/",
        "http://evil.example/",
        f"http://127.0.0.2:{port}/data",
    ):
        with pytest.raises(HostNotAllowed):
            fetch(http_server.url(f"/redirect?to={target}"), ctx)


def test_redirect_limit(make_ctx, http_server):
    ctx = make_ctx(allowed_hosts=LOOPBACK)
    inner = http_server.url("/redirect?to=/data")
    with pytest.raises(PrimitiveError, match="redirected more than 0 time"):
        fetch(inner, ctx, max_redirects=0)
    hop = http_server.url(f"/redirect?to={inner}")
    with pytest.raises(PrimitiveError, match="redirected more than 1 time"):
        fetch(hop, ctx, max_redirects=1)


def test_unresolvable_name(monkeypatch):
    with pytest.raises(PrimitiveError, match="cannot resolve host"):
        check_target("http://no-such-host.invalid/", {"no-such-host.invalid"})

"""IPv6 answers that carry an IPv4 address are judged by it; Teredo and site-local never pass.

A name on the allow-list whose DNS answer is `64:ff9b::a00:1` reaches 10.0.0.1 through a NAT64
gateway: it is as private as 10.0.0.1 itself.
"""

from __future__ import annotations

import pytest

from grammar_ops import network
from grammar_ops.findings import HostNotAllowed
from grammar_ops.network import check_target

ALLOWED = frozenset({"api.example.com"})


def answering(monkeypatch, *addresses: str) -> None:
    monkeypatch.setattr(network, "resolve_host", lambda host, port: list(addresses))


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("64:ff9b::a00:1", "a NAT64 address of 10.0.0.1, a private address"),
        ("64:ff9b::7f00:1", "a NAT64 address of 127.0.0.1, a loopback address"),
        ("64:ff9b::a9fe:a9fe", "a NAT64 address of 169.254.169.254, a link-local address"),
        ("64:ff9b:1::a00:1", "a local-use NAT64 address"),
        ("2002:a00:1::1", "a 6to4 address of 10.0.0.1, a private address"),
        ("2002:7f00:1::1", "a 6to4 address of 127.0.0.1, a loopback address"),
        ("::a00:1", "an IPv4-compatible address of 10.0.0.1, a private address"),
        ("::7f00:1", "an IPv4-compatible address of 127.0.0.1, a loopback address"),
        ("::ffff:10.0.0.1", "10.0.0.1, a private address"),  # IPv4-mapped: read as IPv4
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "a Teredo address"),
        ("fec0::1", "a site-local address"),
    ],
)
def test_embedded_and_legacy_ipv6_answers_are_not_public(monkeypatch, answer, reason):
    answering(monkeypatch, answer)
    with pytest.raises(HostNotAllowed, match=reason):
        check_target("https://api.example.com/v1", ALLOWED)


def test_one_bad_answer_among_good_ones_is_enough(monkeypatch):
    answering(monkeypatch, "93.184.216.34", "64:ff9b::a00:1")
    with pytest.raises(HostNotAllowed, match="NAT64"):
        check_target("https://api.example.com/v1", ALLOWED)


@pytest.mark.parametrize(
    "answer", ["64:ff9b::808:808", "2002:808:808::1", "2001:4860:4860::8888", "93.184.216.34"]
)
def test_public_answers_pass(monkeypatch, answer):
    answering(monkeypatch, answer)
    assert str(check_target("https://api.example.com/v1", ALLOWED).address) == answer


def test_a_listed_network_admits_its_own_addresses(monkeypatch):
    answering(monkeypatch, "fec0::1")
    target = check_target("https://api.example.com/v1", ALLOWED | {"fec0::/10"})
    assert str(target.address) == "fec0::1"

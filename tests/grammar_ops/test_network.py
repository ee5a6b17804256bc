"""No primitive reaches a host outside the allow-list: names, IP literals, DNS, redirects, TLS."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

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


class TlsServer:
    """An HTTPS server on 127.0.0.1 whose certificate names `marigold.test` (a test CA's)."""

    def __init__(self, folder: Path):
        self.ca = folder / "ca.pem"
        key, cert = folder / "leaf.key", folder / "leaf.pem"
        _openssl_certificates(folder, "marigold.test")
        self.seen: list[tuple[str | None, str | None]] = []  # (SNI, Host header) per request
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        sni: list[str | None] = []
        context.sni_callback = lambda sock, name, ctx: sni.append(name)
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                seen.append((sni[-1] if sni else None, self.headers.get("Host")))
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _openssl_certificates(folder: Path, name: str) -> None:
    """A CA, and a leaf certificate for DNS name `name` only (no IP address) signed by it."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    ca = "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2"
    openssl(*ca.split(), "-subj", "/CN=marigold test CA")
    openssl(
        *"req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr".split(),
        "-subj",
        f"/CN={name}",
    )
    (folder / "san.ext").write_text(f"subjectAltName=DNS:{name}\n")
    sign = "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2"
    openssl(*sign.split(), "-extfile", "san.ext")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    server = TlsServer(tmp_path_factory.mktemp("tls"))
    yield server
    server.server.shutdown()


def test_https_dials_the_checked_address_and_verifies_the_name(monkeypatch, tls_server):
    """The connection goes to the pinned IP, while SNI, Host and the certificate use the name."""
    monkeypatch.setattr(network, "resolve_host", lambda host, port: ["127.0.0.1"])
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_server.ca))  # the deployment's private CA
    response = network.guarded_request(
        "GET",
        f"https://marigold.test:{tls_server.port}/data",
        allowed_hosts={"marigold.test", "127.0.0.1"},
        timeout_s=5,
        max_bytes=1000,
    )
    assert response.status_code == 200 and response.content == b'{"ok": true}'
    assert tls_server.seen[-1] == ("marigold.test", f"marigold.test:{tls_server.port}")


def test_https_refuses_a_certificate_for_another_name(monkeypatch, tls_server):
    monkeypatch.setattr(network, "resolve_host", lambda host, port: ["127.0.0.1"])
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_server.ca))
    with pytest.raises(PrimitiveError, match="CERTIFICATE_VERIFY_FAILED|certificate verify"):
        network.guarded_request(
            "GET",
            f"https://rebound.test:{tls_server.port}/data",
            allowed_hosts={"rebound.test", "127.0.0.1"},
            timeout_s=5,
            max_bytes=1000,
        )


def test_https_refuses_a_certificate_of_an_untrusted_ca(monkeypatch, tls_server):
    monkeypatch.setattr(network, "resolve_host", lambda host, port: ["127.0.0.1"])
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(PrimitiveError, match="CERTIFICATE_VERIFY_FAILED|certificate verify"):
        network.guarded_request(
            "GET",
            f"https://marigold.test:{tls_server.port}/data",
            allowed_hosts={"marigold.test", "127.0.0.1"},
            timeout_s=5,
            max_bytes=1000,
        )


def test_an_unreadable_ca_bundle_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(PrimitiveError, match=r"SSL_CERT_FILE=.*missing.pem could not be loaded"):
        network.guarded_request(
            "GET",
            "https://93.184.216.34/",
            allowed_hosts={"93.184.216.34"},
            timeout_s=1,
            max_bytes=10,
        )

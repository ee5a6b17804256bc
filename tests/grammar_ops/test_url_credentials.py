"""Credentials in a URL never show in an error, a receipt or a response record; names are whole.

The requests go to the test server on 127.0.0.1 with `user:s3cret@` in the URL.
"""

from __future__ import annotations

import pytest

from grammar_ops import CompositionError, PrimitiveError, standard_catalog
from grammar_ops.network import guarded_request, redact_url

SECRET = "s3cret"
LOOPBACK = frozenset({"127.0.0.1"})


def with_credentials(url: str) -> str:
    return url.replace("http://", f"http://user:{SECRET}@", 1)


def run(uses, config, value, ctx):
    return standard_catalog().resolve(uses, config).run(value, ctx).value


@pytest.mark.parametrize(
    ("path", "config", "expected"),
    [
        ("/missing", {}, "answered HTTP 404"),
        ("/text", {}, "did not return JSON"),
        ("/data", {"select": "nothing_here"}, "matched nothing"),
        ("/redirect?to=/redirect", {"max_redirects": 0}, "redirected more than 0"),
    ],
)
def test_http_json_errors_redact_credentials(path, config, expected, http_server, make_ctx):
    url = with_credentials(http_server.url(path))
    with pytest.raises(PrimitiveError, match=expected) as caught:
        run("acquire.http_json", {"url": url, **config}, None, make_ctx(allowed_hosts=LOOPBACK))
    assert SECRET not in str(caught.value)
    assert "***@" in str(caught.value) or "redirected" not in expected


def test_webhook_errors_and_receipts_redact_credentials(http_server, make_ctx):
    ctx = make_ctx(allowed_hosts=LOOPBACK)
    with pytest.raises(PrimitiveError, match="answered HTTP 500") as caught:
        run("emit.webhook", {"url": with_credentials(http_server.url("/fail"))}, {"a": 1}, ctx)
    assert SECRET not in str(caught.value) and "***@" in str(caught.value)
    receipt = run("emit.webhook", {"url": with_credentials(http_server.url("/ok"))}, {"a": 1}, ctx)
    assert SECRET not in receipt["url"] and receipt["status"] == 200


def test_a_connection_failure_redacts_credentials():
    with pytest.raises(PrimitiveError) as caught:
        guarded_request(
            "GET",
            f"http://user:{SECRET}@127.0.0.1:9/closed",
            allowed_hosts=LOOPBACK,
            timeout_s=2,
            max_bytes=1000,
        )
    assert SECRET not in str(caught.value)


def test_redaction_covers_every_url_in_a_message():
    text = "from http://a:b@h1/x to https://c:d@h2:8443/y?q=http://e:f@h3/"
    assert redact_url(text) == "from http://***@h1/x to https://***@h2:8443/y?q=http://***@h3/"
    assert redact_url("http://host/path@v2") == "http://host/path@v2"  # `@` in a path is no login


@pytest.mark.parametrize(
    ("uses", "config"),
    [
        ("emit.write_table", {"name": "report\n"}),
        ("decide.rules", {"rules": [{"if": "count() > 0", "then": ["deep\n"]}], "else": []}),
        ("decide.rules", {"rules": [{"if": "count() > 0", "then": ["a"]}], "else": ["b\n"]}),
    ],
)
def test_names_with_a_trailing_newline_are_refused(uses, config):
    with pytest.raises(CompositionError, match=r"A-Za-z0-9_"):
        standard_catalog().resolve(uses, config)

"""HTTP/1.1 semantics through the proxy: streaming, framing, HEAD/204/304, pipelining, headers, upgrade, TLS."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.integration.proxy.conftest import Upstream

MB = 1 << 20


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _raw(url: str, data: bytes, until: bytes, timeout: float = 10) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        while until not in out:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


@pytest.mark.slow
def test_100_mb_streamed_both_ways_with_flat_memory(stable: Upstream, candidate: Upstream, start_proxy) -> None:
    proxy = start_proxy(stable.url, candidate.url)
    assert httpx.get(proxy.url + "/").status_code == 200  # warm: pools and code paths in memory
    baseline = _peak_rss_kb(proxy.proc.pid)

    def body() -> Iterator[bytes]:
        block = b"u" * MB
        for _ in range(100):
            yield block

    with httpx.Client(timeout=60) as client:
        upload = client.post(proxy.url + "/upload", content=body())  # a generator: chunked encoding
        assert upload.status_code == 200 and upload.text == str(100 * MB)
        received = 0
        with client.stream("GET", proxy.url + f"/big?n={100 * MB}") as response:
            assert response.headers["content-length"] == str(100 * MB)
            for chunk in response.iter_raw():
                received += len(chunk)
        assert received == 100 * MB
        chunked = 0
        with client.stream("GET", proxy.url + f"/big?n={20 * MB}&chunked=1") as response:
            assert response.headers["transfer-encoding"] == "chunked"
            for chunk in response.iter_bytes():
                chunked += len(chunk)
        assert chunked == 20 * MB
    grown_mb = (_peak_rss_kb(proxy.proc.pid) - baseline) / 1024
    assert grown_mb < 30, f"peak memory grew by {grown_mb:.0f} MB while streaming 220 MB"


def test_chunked_upload_of_a_small_body_is_retried_with_its_body(stable: Upstream, upstreams, start_proxy) -> None:
    failing = upstreams("candidate", "--fail")
    proxy = start_proxy(stable.url, failing.url, "--weight", "100")
    response = httpx.put(proxy.url + "/echo", content=iter([b"abc", b"defg"]), headers={"idempotency-key": "k"})
    assert response.status_code == 200
    assert response.json()["body_length"] == 7 and response.json()["upstream"] == "stable"


def test_head_204_304_have_no_body_and_the_connection_stays_usable(stable: Upstream, candidate: Upstream,
                                                                    start_proxy) -> None:
    proxy = start_proxy(stable.url, candidate.url)
    with httpx.Client() as client:
        head = client.head(proxy.url + "/")
        assert head.status_code == 200 and head.headers["content-length"] == "1234" and head.content == b""
        assert client.get(proxy.url + "/status/204").status_code == 204
        assert client.get(proxy.url + "/status/304").status_code == 304
        assert client.get(proxy.url + "/").text == "stable"
    # The same on one raw keep-alive connection, pipelined: answers come back in order.
    out = _raw(proxy.url, b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
                          b"GET /status/204 HTTP/1.1\r\nHost: a\r\n\r\n"
                          b"GET /echo?n=3 HTTP/1.1\r\nHost: a\r\n\r\n", until=b'"upstream": "stable"}')
    assert out.count(b"HTTP/1.1 ") == 3
    assert out.index(b"HTTP/1.1 200") < out.index(b"HTTP/1.1 204") < out.index(b"/echo?n=3")


def test_forwarded_headers_host_and_hop_by_hop(stable: Upstream, candidate: Upstream, start_proxy) -> None:
    proxy = start_proxy(stable.url, candidate.url)
    response = httpx.get(proxy.url + "/echo?q=1", headers={
        "host": "shop.example", "x-forwarded-for": "203.0.113.9", "connection": "keep-alive, x-secret-hop",
        "x-secret-hop": "drop me", "keep-alive": "timeout=5", "te": "trailers", "x-app": "kept"})
    seen = response.json()
    headers = seen["headers"]
    assert seen["path"] == "/echo?q=1"
    assert headers["host"] == "shop.example"
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-app"] == "kept"
    for hop in ("x-secret-hop", "keep-alive", "te", "connection"):
        assert hop not in headers
    # An HTTP/1.0 client without Host: the upstream still gets one, and the proxy closes after the answer.
    out = _raw(proxy.url, b"GET /echo HTTP/1.0\r\n\r\n", until=b"}")
    body = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert body["headers"]["host"] == stable.url.removeprefix("http://")


def test_expect_100_continue_passes_through(stable: Upstream, candidate: Upstream, start_proxy) -> None:
    proxy = start_proxy(stable.url, candidate.url)
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the client sent its body
        sock.sendall(b"hello")
        out = interim[25:]
        while b"}" not in out:
            out += sock.recv(4096)
    assert b"HTTP/1.1 200" in out and b'"body_length": 5' in out


def test_websocket_upgrade_is_tunnelled_to_the_side_chosen(stable: Upstream, candidate: Upstream,
                                                           start_proxy) -> None:
    proxy = start_proxy(stable.url, candidate.url, "--weight", "100")
    with ws_connect(proxy.url.replace("http://", "ws://") + "/ws", open_timeout=10) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "candidate:hello"
        ws.send("again")
        assert ws.recv(timeout=10) == "candidate:again"
    assert proxy.stats()["roles"]["canary"]["status"].get("101") == 1


def test_https_upstream(upstreams, start_proxy, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    secure = upstreams("secure", "--tls", str(cert), str(key))
    proxy = start_proxy(secure.url, secure.url, env={"SSL_CERT_FILE": str(cert)})
    response = httpx.get(proxy.url + "/echo")
    assert response.status_code == 200 and response.json()["upstream"] == "secure"

"""The HTTP fetcher against a live server (``http.server`` on 127.0.0.1, a free port).

Manifest §8.4.10.4 (fetch): the payload streams from the URI through the digest into the
component; a response that is cut short, larger than image-size, or a redirect never becomes
the component's content, and a response that announces (Content-Length) more than the
component accepts is refused before the component is even erased.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from suitkit.device.events import Procedure
from suitkit.device.fetch import FileFetcher, SchemeFetcher
from suitkit.device.http_fetch import HttpFetcher
from suitkit.device.memory import MemoryPlatform
from suitkit.device.processor import Processor
from suitkit.device.simulated import SimulatedDevice
from suitkit.errors import ConditionFailedError, OperationFailedError
from suitkit.format.envelope import Envelope

from .conftest import C0, explicit, memory_device, sha
from .devices import ab_manifest, booted_image, new_device, signed

IMG = bytes(range(256)) * 40 + b"the end"  # 10,247 bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests: list[str] = []

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        if self.path == "/fw.bin":
            self._send(IMG)
        elif self.path == "/short.bin":  # announces the whole image, sends half, hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(IMG)))
            self.end_headers()
            self.wfile.write(IMG[: len(IMG) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif self.path == "/big.bin":  # Content-Length larger than image-size
            self._send(IMG + b"x" * 5000)
        elif self.path == "/big-chunked.bin":  # no Content-Length: too large only in the body
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (IMG, b"y" * 5000):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/redirect.bin":
            self.send_response(302)
            self.send_header("Location", "/evil.bin")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/evil.bin":
            self._send(b"evil" * 100)
        else:
            self.send_error(404)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.requests = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _device(capacity: int = 1 << 20) -> MemoryPlatform:
    device = memory_device(capacity=capacity)
    device.fetcher = HttpFetcher(chunk_size=1000, timeout=5)
    return device


def _install(uri: str, *, size: bool = True) -> Envelope:
    params: dict[str, object] = {"digest": sha(IMG)}
    if size:
        params["size"] = len(IMG)
    return explicit(
        shared=[{"override-parameters": params}],
        install=[{"override-parameters": {"uri": uri}}, {"fetch": 2}, {"image-match": 15}],
    )


def test_http_payload_streams_into_the_component(server: str) -> None:
    device = _device()
    result = Processor(device).run(_install(f"{server}/fw.bin"), Procedure.UPDATE)
    assert result.ok, result.error
    assert bytes(device.components_[C0].content or b"") == IMG
    assert device.writes == -(-len(IMG) // 1000)  # chunk by chunk, never the whole payload


def test_short_http_response_is_operation_failed_and_nothing_is_committed(server: str) -> None:
    """The server announces the image's length and hangs up half-way: the fetch fails
    (operation-failed, naming the URI), the writer is aborted, the component stays erased."""
    device = _device()
    device.components_[C0].content = bytearray(b"previous")
    result = Processor(device).run(_install(f"{server}/short.bin"), Procedure.UPDATE)
    assert isinstance(result.error, OperationFailedError)
    assert "short.bin" in result.error.message
    assert device.components_[C0].content is None
    assert device.sequence_numbers == {}


def test_http_content_length_above_image_size_is_refused_before_the_first_write(
    server: str,
) -> None:
    """Manifest §8.4.8.5 image-size: the announced length exceeds it, so the component is not
    even erased (the previous content survives) and nothing is written."""
    device = _device()
    device.components_[C0].content = bytearray(b"previous")
    result = Processor(device).run(_install(f"{server}/big.bin"), Procedure.UPDATE)
    assert isinstance(result.error, OperationFailedError)
    assert "before the first byte" in result.error.message
    assert device.writes == 0
    assert bytes(device.components_[C0].content or b"") == b"previous"


def test_http_content_length_above_the_component_is_refused_before_the_first_write(
    server: str,
) -> None:
    device = _device(capacity=len(IMG) + 100)
    result = Processor(device).run(_install(f"{server}/big.bin", size=False), Procedure.UPDATE)
    assert isinstance(result.error, OperationFailedError)
    assert device.writes == 0


def test_chunked_http_body_larger_than_image_size_is_refused_at_the_first_byte_past_it(
    server: str,
) -> None:
    device = _device()
    result = Processor(device).run(_install(f"{server}/big-chunked.bin"), Procedure.UPDATE)
    assert isinstance(result.error, OperationFailedError)
    assert f"refused at byte {len(IMG) + 1}" in result.error.message
    assert device.bytes_written <= len(IMG)
    assert device.components_[C0].content is None


def test_THREAT_NET_REDIRECT_http_redirect_is_not_followed(server: str) -> None:
    """RFC 9124 §4.2.6 / REQ.SEC.AUTH.REMOTE_LOC: the payload's location is the one the signed
    manifest names; a redirect to another location is an operation failure, nothing is
    fetched from the redirect target and nothing is written."""
    device = _device()
    result = Processor(device).run(_install(f"{server}/redirect.bin"), Procedure.UPDATE)
    assert isinstance(result.error, OperationFailedError)
    assert "302" in result.error.message
    assert "/evil.bin" not in _Handler.requests
    assert device.writes == 0 and device.sequence_numbers == {}


def test_THREAT_NET_ONPATH_payload_changed_in_transit_is_never_installed(
    server: str, tmp_path: Path
) -> None:
    """RFC 9124 §4.2.7 / REQ.SEC.AUTHENTIC: the server (or someone on the path) serves other
    bytes under the signed URI: image-match fails, the A/B update leaves the active slot as it
    was, nothing is committed, and the device still boots the old image."""
    d = tmp_path / "dev"
    new_device(d)

    old = b"old image " * 300
    files = FileFetcher({"http://example.com/firmware.bin": _write(tmp_path / "old.bin", old)})
    assert SimulatedDevice(d, fetcher=files).update(signed(ab_manifest(1, old))).ok
    dev = SimulatedDevice(d)
    assert dev.boot().ok and booted_image(dev) == old
    active = (d / "flash" / "00.1").read_bytes()
    state_before = dev.state["sequence-numbers"], dict(dev.state["boot"]["manifests"])

    env = ab_manifest(2, IMG)
    tampered = SchemeFetcher(FileFetcher({}), HttpFetcher(timeout=5))
    # the manifest's URI, answered by the live server with other bytes (the evil payload)
    dev = SimulatedDevice(d, fetcher=_Rewrite(tampered, f"{server}/evil.bin"))
    result = dev.update(signed(env))
    assert isinstance(result.error, ConditionFailedError)
    assert (d / "flash" / "00.1").read_bytes() == active
    dev = SimulatedDevice(d)
    assert (dev.state["sequence-numbers"], dev.state["boot"]["manifests"]) == state_before
    assert dev.boot().ok and booted_image(dev) == old
    assert hashlib.sha256(booted_image(dev)).digest() == hashlib.sha256(old).digest()


class _Rewrite(SchemeFetcher):
    """Sends every request to one URL: what an on-path attacker controlling the answer does."""

    def __init__(self, inner: SchemeFetcher, url: str) -> None:
        super().__init__(inner.files, inner.http)
        self.url = url

    def _fetch(self, uri: str, arguments: bytes | None, limit: int) -> Iterator[bytes]:
        return super()._fetch(self.url, arguments, limit)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path

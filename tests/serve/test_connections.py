"""Idle sockets, a slow-loris header and more connections than the cap, against `singleshot
serve` in its own process (small limits): each is closed or refused in bounded time, and a
normal client is served throughout."""

import json
import socket
import time

import pytest

from test_server import _http, serve_process


@pytest.fixture(scope="module")
def served():
    proc, url = serve_process("--no-grpc", "--head-timeout-s", "2", "--read-timeout-s", "1",
                              "--max-connections", "30", "--max-connections-per-client", "30",
                              "--max-delay-ms", "1500",
                              "--max-batch", "64")
    yield int(url.rsplit(":", 1)[1]), url
    proc.terminate()
    proc.wait(timeout=60)


def _closed_within(sock, seconds):
    """Whether the server closes ``sock`` within ``seconds`` (reads return EOF or reset)."""
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_idle_sockets_are_closed_and_others_served(served):
    port, url = served
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    try:
        assert _http("GET", url + "/v2/health/live")[0] == 200
        t0 = time.monotonic()
        assert all(_closed_within(s, 5) for s in idle)
        assert time.monotonic() - t0 < 6
    finally:
        for s in idle:
            s.close()


def test_a_slow_loris_head_is_cut_at_the_deadline(served):
    port, _ = served
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 40
        t0 = time.monotonic()
        closed = False
        for k in range(len(head)):  # a byte every 0.3 s: never idle 1 s, never done
            try:
                sock.send(head[k:k + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.3)
            if time.monotonic() - t0 > 8:
                break
        assert closed or _closed_within(sock, 1)
        assert time.monotonic() - t0 < 5  # the 2 s head deadline, not the 12 s it would take
    finally:
        sock.close()


def test_past_the_connection_cap_503_then_recovers(served):
    port, url = served
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(30)]
    try:
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", port))
        extra.settimeout(5)
        reply = extra.recv(4096)
        extra.close()
        assert reply.startswith(b"HTTP/1.1 503") and b"too many open connections" in reply
        body = reply.split(b"\r\n\r\n", 1)[1]
        assert json.loads(body)["error"].startswith("too many")
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert _http("GET", url + "/v2/health/live")[0] == 200


def test_a_slow_request_being_answered_is_not_cut(served, scenes):
    """A request whose answer takes longer than the read timeout (held 1.5 s by the batching
    delay) is answered: the timer only runs while the server waits for the client."""
    _, url = served
    t0 = time.monotonic()
    status, payload, _ = _http("POST", url + "/detect", scenes[0].read_bytes(),
                               {"Content-Type": "image/jpeg"})
    assert status == 200 and time.monotonic() - t0 > 1.4

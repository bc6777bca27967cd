"""Connection limits uvicorn does not set: a deadline for a request's head, a timeout between
the bytes of a request, a total deadline for a request's body, a cap on open connections and
a share of it per client address.

uvicorn closes idle keep-alive connections only after a first response, and never a connection
that sends nothing, or a header a byte at a time (slow loris), or a body a byte every few
seconds: enough of them take every file descriptor. Written here as a subclass of uvicorn's h11
protocol (no option or library does it): each connection has one timer; it closes the
connection when a request's head is not complete ``head_s`` after the connection (or the last
response), when ``read_s`` pass without a byte while the server waits for the client, or when a
body is still coming ``body_s`` after its head. A connection past ``max_connections``, or past
``per_client`` from one address, gets a 503 and is closed: one client's flood leaves room for
the others.
"""

from __future__ import annotations


def guarded_protocol(head_s: float, read_s: float, max_connections: int,
                     body_s: float = 60.0, per_client: int | None = None):
    """The uvicorn ``http`` protocol class with these limits (``per_client`` None: half of
    ``max_connections``)."""
    from collections import Counter

    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    busy = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 49\r\n\r\n"
            b'{"error": "too many open connections; retry"}   ')

    share = per_client or max(1, max_connections // 2)
    by_client: Counter = Counter()  # open connections per client address (one event loop)

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._timer, self._body_since = None, None
            peer = transport.get_extra_info("peername")
            self._client = peer[0] if isinstance(peer, tuple) and peer else None
            by_client[self._client] += 1
            if len(self.connections) > max_connections or by_client[self._client] > share:
                transport.write(busy)
                transport.close()
                return
            self._head_since = self._last_byte = self.loop.time()
            self._arm(min(head_s, read_s))

        def data_received(self, data: bytes) -> None:
            self._last_byte = self.loop.time()
            super().data_received(data)
            if self._body_since is None and self.conn.their_state == h11.SEND_BODY:
                self._body_since = self._last_byte

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # the wait for the client starts again: the next request's head, its first byte
            self._head_since = self._last_byte = self.loop.time()
            self._body_since = None

        def connection_lost(self, exc) -> None:
            if self._timer is not None:
                self._timer.cancel()
            by_client[self._client] -= 1
            if by_client[self._client] <= 0:
                del by_client[self._client]
            super().connection_lost(exc)

        def _arm(self, delay: float) -> None:
            self._timer = self.loop.call_later(max(0.01, delay), self._check)

        def _check(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            now, cycle = self.loop.time(), self.cycle
            if cycle is not None and not cycle.response_complete and \
                    self.conn.their_state in (h11.DONE, h11.MUST_CLOSE):
                self._arm(read_s)  # the request is in; the server is answering it
                return
            left = read_s - (now - self._last_byte)  # between bytes
            if self._body_since is not None and self.conn.their_state == h11.SEND_BODY:
                left = min(left, body_s - (now - self._body_since))  # the body as a whole
            if cycle is None or cycle.response_complete:  # waiting for a request's head
                left = min(left, head_s - (now - self._head_since))
            if left > 0:
                self._arm(left)
                return
            self.transport.close()  # silent or too slow: its descriptor goes back

    return GuardedH11Protocol

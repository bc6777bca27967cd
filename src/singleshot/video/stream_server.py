"""A live MPEG-TS stream over HTTP on 127.0.0.1, paced in real time, that records when it sent
each frame: what the live mode is tested and benchmarked against (latency = when a result is
written minus when the source sent that frame). Each GET gets its own stream from frame 0.

Not a media server: one encoder per connection, H.264 with ``zerolatency`` (no lookahead, so a
frame leaves the encoder as soon as it is given) in MPEG-TS, written straight to the socket.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable

import numpy as np


class StreamServer:
    """``StreamServer(frame_at, fps, size).start()`` -> ``url``; ``sent[k]``: the wall time
    (``time.time()``) frame ``k`` of the latest connection was written; ``stop()``.
    ``frame_at(k)`` -> RGB uint8 [H, W, 3]; ``seconds``: how long each connection streams;
    ``drop_after``: close each connection after that many frames (a dropping stream)."""

    def __init__(self, frame_at: Callable[[int], np.ndarray], fps: float, size: tuple[int, int],
                 seconds: float = 60.0, drop_after: int | None = None) -> None:
        self.frame_at, self.fps, self.size = frame_at, fps, size
        self.seconds, self.drop_after = seconds, drop_after
        self.sent: dict[int, float] = {}
        self.connections = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.end_headers()
                try:
                    owner._stream(self.wfile)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass  # the client went away

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/live.ts"

    def start(self) -> str:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self.url

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _stream(self, sink) -> None:
        import av

        w, h = self.size
        container = av.open(sink, "w", format="mpegts")
        stream = container.add_stream("libx264", rate=int(self.fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        t0 = time.time()
        n = int(self.seconds * self.fps)
        if self.drop_after is not None:
            n = min(n, self.drop_after)
        try:
            for k in range(n):
                due = t0 + k / self.fps
                if due > time.time():
                    time.sleep(due - time.time())
                frame = av.VideoFrame.from_ndarray(self.frame_at(k), format="rgb24")
                frame.pts = k
                for packet in stream.encode(frame):
                    container.mux(packet)
                sink.flush()
                self.sent[k] = time.time()
        finally:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - the client may have gone already
                pass

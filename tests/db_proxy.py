"""A TCP relay between pixseek and the shared PostgreSQL server that a test can cut and restore.

Tests must never stop the shared server (other tests use it), so an outage is simulated here: while
cut, every relayed connection is dropped and new ones are closed as soon as they are accepted, which
the driver sees exactly as a server that went away (``server closed the connection unexpectedly``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class TcpProxy:
    """Relays 127.0.0.1:``port`` to ``target``. :meth:`cut_at` cuts just before the n-th client
    message containing a pattern, so that a test can lose the database in the middle of a given
    write (deterministically, not on a timer)."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._is_cut = False
        self._trigger: tuple[bytes, int] | None = None
        self._seen = 0
        self.cut_event = threading.Event()  # set once the proxy has cut
        self._closed = False
        threading.Thread(target=self._accept, name="db-proxy", daemon=True).start()

    def url(self, database_url: str) -> str:
        """``database_url`` (on ``target``) rewritten to go through the proxy."""
        host, port = self.target
        return database_url.replace(f"@{host}:{port}/", f"@127.0.0.1:{self.port}/")

    def cut_at(self, pattern: bytes, occurrence: int) -> None:
        """Cut when the ``occurrence``-th client message containing ``pattern`` arrives (not relayed)."""
        with self._lock:
            self._trigger, self._seen = (pattern, occurrence), 0

    def cut(self) -> None:
        """Drop every relayed connection and refuse new ones until :meth:`restore`."""
        with self._lock:
            self._is_cut, self._trigger = True, None
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _drop(sock)
        self.cut_event.set()

    def restore(self) -> None:
        with self._lock:
            self._is_cut = False
        self.cut_event.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    # ---- relaying ------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refused = self._is_cut
            if refused:
                _drop(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                _drop(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if from_client and self._triggered(data):
                    self.cut()
                    return
                sink.sendall(data)
        _drop(source)
        _drop(sink)

    def _triggered(self, data: bytes) -> bool:
        with self._lock:
            if self._trigger is None or self._trigger[0] not in data:
                return False
            self._seen += 1
            return self._seen >= self._trigger[1]


def _drop(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@contextlib.contextmanager
def proxy_to(target: tuple[str, int]) -> Iterator[TcpProxy]:
    proxy = TcpProxy(target)
    try:
        yield proxy
    finally:
        proxy.close()

"""A TCP server that accepts connections and never answers: a broker or database that hangs
(a stuck process, a full disk, a black-holed network path) rather than refusing.

with SilentServer() as server:
    child_env(CELERY_BROKER_URL=f"redis://127.0.0.1:{server.port}/0")
"""

from __future__ import annotations

import contextlib
import socket
import threading


class SilentServer:
    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            self.accepted.append(client)  # held open, never read from or written to

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for client in self.accepted:
            client.close()

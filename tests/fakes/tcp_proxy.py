"""A TCP proxy a test can cut, black-hole and heal: a database or broker outage for one
process, on demand, without touching the shared services.

with TcpProxy("127.0.0.1", 5432) as proxy:
    child_env(DATABASE_URL=f"postgres://postgres@127.0.0.1:{proxy.port}/...")
    proxy.cut()        # every connection through it drops, new ones are refused
    proxy.heal()       # new connections get through again (on the same port)
    proxy.blackhole()  # connections stay open but nothing passes either way, new ones too:
                       # a peer that accepts and never answers (a dead route, a hung server)
    proxy.heal()       # what was held back flows again, as TCP's retransmissions would
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.cut_event = threading.Event()
        # Set while bytes may pass; cleared by blackhole(). Pipes wait on it before forwarding.
        self._flowing = threading.Event()
        self._flowing.set()
        self._listen()

    def _listen(self) -> None:
        # The same port after a heal, so the processes' settings still point at it.
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was shut down: cut
            if self.cut_event.is_set():
                client.close()
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        with self._lock:
            self._sockets.append(client)
        self._flowing.wait()  # a black hole: the peer never answers the handshake either
        if self.cut_event.is_set():
            return
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets.append(upstream)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                if self.cut_event.is_set():
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every connection and refuse new ones, like a database that went away."""
        self.cut_event.set()
        self._flowing.set()  # wake the held pipes, which then see the cut and end
        # shutdown() wakes the thread blocked in accept(); close() alone would leave the
        # listening socket alive until accept() returned, and a new connection would get in.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def blackhole(self) -> None:
        """Hold every byte, both ways, on open and new connections: nothing is refused and
        nothing answers (only the caller's own timeouts end a wait)."""
        self._flowing.clear()

    def heal(self) -> None:
        """Let traffic through again: after cut(), listen again on the same port; after
        blackhole(), release what was held."""
        if self.cut_event.is_set():
            self.cut_event.clear()
            self._listen()
        self._flowing.set()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()

"""The fault proxy itself: it passes bytes, cuts, black-holes and heals on the same port."""

import socket
import threading

import pytest

from tests.fakes.tcp_proxy import TcpProxy


def _echo_each(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(1024):
            conn.sendall(data)


@pytest.fixture
def echo():
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=_echo_each, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def ask(port: int, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"ping")
        return sock.recv(16)


def test_cut_refuses_and_heal_listens_again_on_the_same_port(echo):
    with TcpProxy("127.0.0.1", echo) as proxy:
        assert ask(proxy.port) == b"ping"
        proxy.cut()
        with pytest.raises(OSError):
            ask(proxy.port)
        proxy.heal()
        assert ask(proxy.port) == b"ping"


def test_a_black_hole_answers_nothing_until_healed(echo):
    with TcpProxy("127.0.0.1", echo) as proxy:
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        held.sendall(b"one")
        assert held.recv(16) == b"one"
        proxy.blackhole()
        held.sendall(b"two")
        with pytest.raises(TimeoutError):
            ask(proxy.port, timeout=0.3)  # accepted, never answered
        held.settimeout(0.3)
        with pytest.raises(TimeoutError):
            held.recv(16)
        proxy.heal()
        held.settimeout(5)
        assert held.recv(16) == b"two"
        held.close()
        assert ask(proxy.port) == b"ping"

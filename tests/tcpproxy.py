"""A TCP proxy whose link a test can cut, to take a real service away from one client.

``mode`` is ``"up"`` (forward), ``"down"`` (existing connections are reset, new ones closed at
once: a broker that went away) or ``"blackhole"`` (connections are accepted and bytes swallowed:
a broker that stopped answering).
"""

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, upstream_host, upstream_port, host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.mode = "up"
        self._server = socket.create_server((host, 0))
        self.port = self._server.getsockname()[1]
        self._pairs = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def url(self, scheme="amqp", userinfo="guest:guest", path="//"):
        return f"{scheme}://{userinfo}@127.0.0.1:{self.port}{path}"

    def set_mode(self, mode):
        assert mode in {"up", "down", "blackhole"}
        self.mode = mode
        if mode != "up":
            self._reset_all()

    def close(self):
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()
        self._reset_all()
        self._thread.join(timeout=5)

    def _reset_all(self):
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
        for pair in pairs:
            for sock in pair:
                _close(sock)

    def _accept_loop(self):
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.mode == "down":
                _close(client)
                continue
            if self.mode == "blackhole":
                with self._lock:
                    self._pairs.add((client,))
                threading.Thread(target=_swallow, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True).start()

    def _pump(self, src, dst, pair):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            _close(src)
            _close(dst)


def _swallow(sock):
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
    finally:
        _close(sock)


def _close(sock):
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()

"""A TCP proxy whose link a test can cut, to take a real service away from one client.

``mode`` is ``"up"`` (forward), ``"down"`` (existing connections are reset, new ones closed at
once: a broker that went away) or ``"blackhole"`` (connections are accepted and bytes swallowed:
a broker that stopped answering).

``hold(direction)`` stops the bytes of the connections open at that moment in one direction,
``"to_upstream"`` (a request that has not reached the server yet) or ``"to_client"`` (an answer
that has not come back yet), until ``release()``; connections opened later flow as usual.
"""

import collections
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
        self._flow = threading.Condition()
        self._held = set()  # (pair, direction)
        self.held_bytes = collections.Counter()  # direction -> bytes waiting in the proxy
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

    def hold(self, direction):
        assert direction in {"to_upstream", "to_client"}
        with self._lock:
            pairs = list(self._pairs)
        with self._flow:
            self._held.update((pair, direction) for pair in pairs)

    def release(self):
        with self._flow:
            self._held.clear()
            self.held_bytes.clear()
            self._flow.notify_all()

    def close(self):
        self._closed = True
        self.release()
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
        direction = "to_upstream" if src is pair[0] else "to_client"
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._wait_while_held(pair, direction, len(data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            _close(src)
            _close(dst)

    def _wait_while_held(self, pair, direction, size):
        with self._flow:
            if (pair, direction) in self._held:
                self.held_bytes[direction] += size
            while (pair, direction) in self._held:
                self._flow.wait()


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

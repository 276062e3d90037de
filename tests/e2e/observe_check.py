#!/usr/bin/env python3
"""Independent checks of what a run writes for observers (used by tests/e2e/observe.sh and
tests/e2e/monitor.sh; written from the formats' specifications, not from Strata's writers).

  observe_check.py tfevents FILE            decode a TensorBoard event file, print its scalars
                                            as JSON {tag: {step: value}}
  observe_check.py trace FILE RANK          check a trace-event JSON file; print a summary JSON
  observe_check.py status FILE WORLD        check a /status document; print it back

Each exits 1 with a message naming what is wrong.
"""
import json
import struct
import sys


def crc32c(data):
    # Bitwise CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), no tables, no libraries.
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    # TFRecord: ((crc >> 15) | (crc << 17)) + 0xa282ead8, in 32 bits.
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def fail(msg):
    print("observe_check: " + msg, file=sys.stderr)
    sys.exit(1)


def varint(buf, i):
    shift = value = 0
    while True:
        if i >= len(buf):
            fail("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def fields(buf):
    """Protobuf wire format: yields (field number, wire type, value)."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            n, i = varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            fail("unsupported wire type %d" % wire)
        if i > len(buf):
            fail("field %d runs past the end of its message" % field)
        yield field, wire, value


def tfrecords(data):
    i = 0
    while i < len(data):
        if i + 12 > len(data):
            fail("truncated record header at byte %d" % i)
        length_bytes = data[i:i + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (len_crc,) = struct.unpack("<I", data[i + 8:i + 12])
        if masked(crc32c(length_bytes)) != len_crc:
            fail("bad length CRC at byte %d" % i)
        payload = data[i + 12:i + 12 + length]
        if len(payload) != length or i + 16 + length > len(data):
            fail("truncated record at byte %d" % i)
        (data_crc,) = struct.unpack("<I", data[i + 12 + length:i + 16 + length])
        if masked(crc32c(payload)) != data_crc:
            fail("bad data CRC at byte %d" % i)
        yield payload
        i += 16 + length


def tfevents(path):
    scalars = {}
    records = list(tfrecords(open(path, "rb").read()))
    if not records:
        fail("no records")
    first = dict((f, v) for f, _, v in fields(records[0]))
    if first.get(3) != b"brain.Event:2":
        fail("the first event has no file_version brain.Event:2: %r" % first)
    for rec in records[1:]:
        step, wall, summary = None, None, None
        for f, wire, v in fields(rec):
            if f == 1 and wire == 1:
                (wall,) = struct.unpack("<d", v)
            elif f == 2 and wire == 0:
                step = v
            elif f == 5 and wire == 2:
                summary = v
        if wall is None or step is None:
            fail("an event without wall_time or step")
        for f, wire, value in fields(summary or b""):
            if f != 1 or wire != 2:
                continue
            tag, simple = None, None
            for vf, vw, vv in fields(value):
                if vf == 1 and vw == 2:
                    tag = vv.decode()
                elif vf == 2 and vw == 5:
                    (simple,) = struct.unpack("<f", vv)
            if tag is None or simple is None:
                fail("a summary value without tag or simple_value")
            scalars.setdefault(tag, {})[str(step)] = simple
    print(json.dumps(scalars, sort_keys=True))


def trace(path, rank):
    doc = json.load(open(path))
    events = doc["traceEvents"]
    open_spans = {}
    lanes = {}
    summary = {"begin_end_pairs": 0, "complete": 0, "cats": {}, "names": []}
    for e in events:
        ph = e["ph"]
        if ph == "M":
            continue
        if e["pid"] != rank:
            fail("event with pid %s in rank %d's trace" % (e["pid"], rank))
        key = (e["pid"], e["tid"])
        if ph == "B":
            open_spans.setdefault(key, []).append(e)
        elif ph == "E":
            stack = open_spans.get(key)
            if not stack:
                fail("an E event without its B: %r" % e)
            b = stack.pop()
            if b["name"] != e["name"] or e["ts"] < b["ts"]:
                fail("E %r does not match B %r" % (e, b))
            summary["begin_end_pairs"] += 1
        elif ph == "X":
            if e["dur"] < 0:
                fail("negative duration: %r" % e)
            lanes.setdefault(key, []).append((e["ts"], e["ts"] + e["dur"]))
            summary["complete"] += 1
            summary["cats"][e["cat"]] = summary["cats"].get(e["cat"], 0) + 1
            summary["names"].append(e["name"])
        else:
            fail("unexpected phase %r" % ph)
    for key, stack in open_spans.items():
        if stack:
            fail("B events never ended on %r: %r" % (key, stack))
    eps = 1e-3  # the writer rounds to nanoseconds
    for key, spans in lanes.items():  # complete events on one tid must nest, never cross
        spans.sort(key=lambda s: (s[0], -s[1]))
        ends = []
        for t0, t1 in spans:
            while ends and ends[-1] <= t0 + eps:
                ends.pop()
            if ends and t1 > ends[-1] + eps:
                fail("spans cross on tid %r: [%f, %f] against one ending at %f" % (key, t0, t1, ends[-1]))
            ends.append(t1)
    print(json.dumps(summary))


def status(path, world):
    s = json.load(open(path))
    for key in ("step", "total_steps", "eta_s", "elapsed_s", "history", "ranks", "layout"):
        if key not in s:
            fail("/status has no %r" % key)
    if len(s["ranks"]) != world:
        fail("/status lists %d ranks, expected %d" % (len(s["ranks"]), world))
    for i, r in enumerate(s["ranks"]):
        for key in ("rank", "state", "activity", "step", "heartbeat_age_s", "last_heartbeat", "memory"):
            if key not in r:
                fail("rank %d has no %r" % (i, key))
        if r["rank"] != i:
            fail("ranks out of order")
    print(json.dumps(s))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        fail(__doc__)
    cmd = sys.argv[1]
    if cmd == "tfevents":
        tfevents(sys.argv[2])
    elif cmd == "trace":
        trace(sys.argv[2], int(sys.argv[3]))
    elif cmd == "status":
        status(sys.argv[2], int(sys.argv[3]))
    else:
        fail("unknown command " + cmd)

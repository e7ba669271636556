"""Does C++ protobuf read fastload's hand-encoded KServe requests as Python protobuf does?

KServeEncoder writes the `priority` and `timeout` request parameters as padded (non-minimal)
varints so it can rewrite them in place. This encodes a few hundred requests over varied
settings, parses each with Python's kserve_pb2 and with the C++ parser (parse_infer.cc, built
by run.sh), and asserts that every field agrees. Sanity cases show the check can fail: padded
varints are really in the bytes, and mutated bytes are caught.

Usage: python check.py --parser build/parse_infer   (run.sh builds it and calls this)
"""
from __future__ import annotations

import argparse
import itertools
import json
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import google.protobuf
from google.protobuf import unknown_fields
from google.protobuf.internal import api_implementation
from google.protobuf.message import DecodeError

from fastload._pb.kserve_pb2 import ModelInferRequest
from fastload.targets._encode_kserve import MAX_TIMEOUT_US, KServeEncoder

SHAPES = [(1, 3, 224, 224), (1,), (2, 3), (4, 0), (1, 1, 1, 300)]
NAMES = [("resnet50", ""), ("m" * 200, "17")]  # a 200-byte name needs a 2-byte length
PRIORITIES: list[dict[int, int] | None] = [
    {1: 1, 2: 2, 3: 3},
    {1: 0, 2: 200, 3: 2**40},
    {1: 2**63 - 1, 2: 0, 3: 5},
    None,
]
HOUR_NS = 3600 * 10**9
# Deadlines relative to now (ns): past, near, far, beyond the 9.5 h clamp; int64max is absolute.
DEADLINES: list[tuple[str, int]] = [
    ("past", -10 * 10**9),
    ("near", 2 * 10**6),
    ("far", 2 * HOUR_NS),
    ("clamp", 10 * HOUR_NS),
    ("int64max", 2**63 - 1),  # absolute deadline: year 2262
]
Record = dict[str, Any]


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    """(value, length) of the varint at data[at:]."""
    value = shift = 0
    for n in range(10):
        byte = data[at + n]
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, n + 1
    raise ValueError("varint longer than 10 bytes")


def minimal_len(value: int) -> int:
    """Bytes of the shortest varint for value."""
    return max(1, (value.bit_length() + 6) // 7)


def param_varint(data: bytes, key: str) -> tuple[int, int, int] | None:
    """(offset, value, length) of the varint value of parameters[key], found in the raw bytes."""
    at = data.find(bytes([0x0A, len(key)]) + key.encode() + b"\x12")
    if at < 0:
        return None
    at += 2 + len(key) + 1 + 1 + 1  # key, value tag, value length (< 128), oneof tag
    value, length = read_varint(data, at)
    return at, value, length


def python_view(data: bytes) -> Record:
    """What Python protobuf reads, in the shape parse_infer.cc prints."""
    try:
        r = ModelInferRequest.FromString(data)
    except DecodeError:
        return {"parse_error": True}
    out: Record = {"model_name": r.model_name, "model_version": r.model_version, "id": r.id,
                   "n_inputs": len(r.inputs), "n_outputs": len(r.outputs)}
    if r.inputs:
        t = r.inputs[0]
        out.update(input_name=t.name, datatype=t.datatype, shape=list(t.shape))
    params = {}
    for key, p in r.parameters.items():
        case = p.WhichOneof("parameter_choice")
        params[key] = {"case": case, "value": getattr(p, case) if case else None}
    out["parameters"] = params
    out["n_raw"] = len(r.raw_input_contents)
    if r.raw_input_contents:
        raw = r.raw_input_contents[0]
        n = min(3, len(raw) // 4)
        out["raw_size"] = len(raw)
        out["first_floats"] = [f"{v:08x}" for v in struct.unpack_from(f"<{n}I", raw)]
    out["unknown_bytes"] = 0 if len(unknown_fields.UnknownFieldSet(r)) == 0 else -1
    out["chunked_equal"] = True
    return out


def cpp_views(parser: str, requests: list[bytes]) -> list[Record]:
    """What the C++ parser reads, one record per request."""
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        for data in requests:
            f.write(struct.pack("<I", len(data)) + data)
        f.flush()
        out = subprocess.run([parser, f.name], check=True, capture_output=True, text=True)
    views = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(views) == len(requests), (len(views), len(requests))
    return views


def encode_all() -> tuple[list[bytes], list[tuple[int, int | None, str]]]:
    """Requests over every setting, each with (expected priority, timeout kind) for checks."""
    requests: list[bytes] = []
    expected: list[tuple[int, int | None, str]] = []
    settings = itertools.product(SHAPES, NAMES, PRIORITIES, (True, False), (False, True))
    for shape, (name, version), prios, timeout, fresh in settings:
        enc = KServeEncoder(shape, model_name=name, input_name="input__0", model_version=version,
                            priorities=prios, timeout=timeout, pool_size=2, fresh=fresh, seed=7)
        tiers = sorted(prios) if prios else [1]
        for (kind, offset), tier in zip(DEADLINES, itertools.cycle(tiers)):
            deadline = offset if kind == "int64max" else time.time_ns() + offset
            data = enc.encode(tier, deadline)
            requests.append(bytes(memoryview(data)))  # the encoder rewrites its buffers
            expected.append((len(requests) - 1, prios[tier] if prios else None,
                             kind if timeout else "off"))
    return requests, expected


def check_python_values(requests: list[bytes], expected: list[tuple[int, int | None, str]]
                        ) -> tuple[int, int]:
    """Python reads the intended values; returns (padded priorities, padded timeouts) seen."""
    padded_prio = padded_timeout = 0
    for i, prio, kind in expected:
        data, view = requests[i], python_view(requests[i])
        params = view["parameters"]
        if prio is None:
            assert "priority" not in params
        else:
            assert params["priority"] == {"case": "uint64_param", "value": prio}, (i, params)
            _, value, length = param_varint(data, "priority")  # type: ignore[misc]
            assert value == prio
            padded_prio += length > minimal_len(value)
        if kind == "off":
            assert "timeout" not in params
            continue
        t = params["timeout"]
        assert t["case"] == "int64_param", t
        far_us = 2 * HOUR_NS // 1000
        want = {"past": (1, 1), "near": (1, 2000), "far": (far_us - 10**6, far_us),
                "clamp": (MAX_TIMEOUT_US, MAX_TIMEOUT_US),
                "int64max": (MAX_TIMEOUT_US, MAX_TIMEOUT_US)}[kind]
        assert want[0] <= t["value"] <= want[1], (i, kind, t)
        _, value, length = param_varint(data, "timeout")  # type: ignore[misc]
        assert value == t["value"] and length == 5, (value, length)
        padded_timeout += length > minimal_len(value)
    assert padded_prio > 0 and padded_timeout > 0, "no padded varints: the check proves nothing"
    return padded_prio, padded_timeout


def mutations(data: bytes) -> list[tuple[str, bytes]]:
    """Single-byte changes to one request, each of which a parser must read differently."""
    out: list[tuple[str, bytes]] = []

    def bump(at: int, how: Callable[[int], int]) -> bytes:
        b = bytearray(data)
        b[at] = how(b[at])
        return bytes(b)

    for key in ("priority", "timeout"):
        found = param_varint(data, key)
        if found:
            at, _, length = found
            out.append((key, bump(at + length - 1, lambda x: x ^ 0x01)))  # top 7-bit group
    name_at = 2 if data[1] < 0x80 else 3  # after field 1's tag and 1- or 2-byte length
    out.append(("model_name", bump(name_at, lambda x: x ^ 0x01)))
    raw_at = len(data) - len(ModelInferRequest.FromString(data).raw_input_contents[0])
    if raw_at < len(data):  # the tensor is the message's last field
        out.append(("first_floats", bump(raw_at, lambda x: x ^ 0x01)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parser", required=True, help="the built parse_infer binary")
    args = ap.parse_args()
    version = subprocess.run([args.parser, "--version"], check=True, capture_output=True,
                             text=True).stdout.strip()

    requests, expected = encode_all()
    padded_prio, padded_timeout = check_python_values(requests, expected)
    mismatches = 0
    for i, (data, cpp) in enumerate(zip(requests, cpp_views(args.parser, requests))):
        py = python_view(data)
        if cpp != py:
            mismatches += 1
            print(f"request {i}: C++ {cpp}\n            Py  {py}", file=sys.stderr)

    # Sanity: mutated bytes must read differently from the originals, and still C++ == Python.
    sample = [requests[i] for i, prio, kind in expected
              if prio is not None and kind != "off"][::8]
    muts = [(field, orig, m) for orig in sample for field, m in mutations(orig)]
    caught = 0
    for (field, orig, m), cpp in zip(muts, cpp_views(args.parser, [m for _, _, m in muts])):
        base = python_view(orig)
        differs = {k for k in base if base[k] != cpp.get(k)}
        if field in ("priority", "timeout"):
            ok = differs == {"parameters"} and cpp["parameters"][field] != base["parameters"][field]
        else:
            ok = differs == {field}
        caught += ok
        mismatches += cpp != python_view(m)
    assert caught == len(muts), f"only {caught}/{len(muts)} mutations detected"

    status = "all equal" if mismatches == 0 else f"{mismatches} DIFFER"
    print(f"{len(requests)} requests (+{len(muts)} mutated, all {caught} caught): C++ vs Python "
          f"{status}; padded varints: {padded_prio} priority, {padded_timeout} timeout; "
          f"libprotobuf {version}, Python protobuf {google.protobuf.__version__} "
          f"({api_implementation.Type()}); {time.strftime('%Y-%m-%d')}")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

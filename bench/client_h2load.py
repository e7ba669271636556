"""h2load (nghttp2's C HTTP/2 client) sending the floor's request as gRPC: the CPU the kernel and a
C client need to move it, the room below grpcio (issue 24).

Not a LoadGen client: h2load sends qps x duration requests at a constant ``--rps`` (no Poisson
arrivals) on one connection, at most 100 in flight, and answers only with HTTP statuses (it
reads no gRPC trailers). Its per-request log gives the rows: start time, latency, and "OK" for an
HTTP 200; send lag is 0 (it has no schedule to lag). The ladder compares its CPU per request.
Needs ``h2load`` on PATH (Debian: ``apt-get install nghttp2-client``).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from client_floor import constant_request
from harness import INFER_METHOD, client_args, with_input_shape, write_samples


def main() -> int:
    args = client_args(__doc__, with_input_shape)
    if shutil.which("h2load") is None:
        print("client_h2load: h2load is not on PATH (apt-get install nghttp2-client)",
              file=sys.stderr)
        return 2
    request = constant_request(args.seed, args.input_shape)
    count = max(1, round(args.qps * args.duration_ms / 1000))
    with tempfile.TemporaryDirectory() as folder:
        body, log = Path(folder) / "request.bin", Path(folder) / "requests.log"
        body.write_bytes(b"\x00" + len(request).to_bytes(4, "big") + request)
        wall_at_start_ns, mono_at_start_ns = time.time_ns(), time.monotonic_ns()
        proc = subprocess.run(
            ["h2load", "-n", str(count), "-c", "1", "-m", "100", "--rps", f"{args.qps:g}",
             "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
             "-H", "grpc-timeout: 5S", "--log-file", str(log),
             f"http://{args.target}{INFER_METHOD}"], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
            return proc.returncode
        rows = []
        for line in log.read_text().splitlines():
            start_us, status, latency_us = line.split("\t")[:3]
            # Its wall clock start, moved onto this process's CLOCK_MONOTONIC.
            issue_ns = int(start_us) * 1000 - wall_at_start_ns + mono_at_start_ns
            rows.append((issue_ns, 0, int(latency_us) * 1000,
                         "OK" if status == "200" else f"HTTP_{status}"))
    write_samples(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

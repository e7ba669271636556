"""Reference: LoadGen alone, with a callback that completes every sample at once.

Same LoadGen settings and seed as the clients, so its issue times are the schedule as LoadGen
delivers it with nothing else in the process: the runner compares each client's inter-arrival
CV and achieved rate with this run's at the same rate and seed.
"""
from __future__ import annotations

from time import monotonic_ns

import mlperf_loadgen as lg

from harness import client_args, run_loadgen, write_samples


def main() -> None:
    args = client_args(__doc__)
    issue_ns: list[int] = []
    record, complete, response = issue_ns.append, lg.QuerySamplesComplete, lg.QuerySampleResponse

    def issue_query(sample_ids: list[int], _indices: list[int]) -> None:
        issued_ns = monotonic_ns()
        for _ in sample_ids:
            record(issued_ns)
        complete([response(i, 0, 0) for i in sample_ids])

    sut = lg.ConstructFastSUT(issue_query, lambda: None)
    run_loadgen(sut, args)
    lg.DestroyFastSUT(sut)
    # Nothing is sent: send lag -1 (not applicable), latency 0.
    write_samples(args.out, ((t, -1, 0, "OK") for t in issue_ns))


if __name__ == "__main__":
    main()

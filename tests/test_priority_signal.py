"""--priority-signal: what each request carries to a server that keeps every request, and that
the signal changes nothing else: the same seed sends the same requests whatever the signal."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from test_dispatch import RecordingServer

from fastload.contract.signals import PrioritySignal, tier_mix
from fastload.contract.workload import load_workload_file

from test_generator import read_rows, run_fastload

# Three tiers at 20 / 30 / 50 %, small tensors.
WORKLOAD = (
    '[models.resnet50]\nshape = [1, 64]\n'
    '[[classes]]\ntier = 1\nslo = "urgent"\nfraction = 0.2\nmodels = { resnet50 = 1.0 }\n'
    '[[classes]]\ntier = 2\nslo = "normal"\nfraction = 0.3\nmodels = { resnet50 = 1.0 }\n'
    '[[classes]]\ntier = 3\nslo = "relaxed"\nfraction = 0.5\nmodels = { resnet50 = 1.0 }\n'
)
MIX = {1: 0.2, 2: 0.3, 3: 0.5}


def run_with(tmp_path: Path, server: RecordingServer, signal: str, *flags: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "mix.toml").write_text(WORKLOAD)
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", server.address,
                                  "--workload-file", str(tmp_path / "mix.toml"),
                                  "--priority-signal", signal, "--seed", "11", *flags)
    assert proc.returncode == 0, proc.stderr
    return proc, read_rows(csv_path), json.loads(csv_path.with_suffix(".json").read_text())


@pytest.mark.parametrize("signal", ["as-is", "equal", "shuffled"])
def test_each_signal_sends_its_tiers_and_the_rows_keep_the_true_ones(tmp_path, signal):
    server = RecordingServer()
    try:
        proc, rows, summary = run_with(tmp_path, server, signal, "--total-qps", "300",
                                       "--duration-ms", "3000")
    finally:
        server.stop()
    sent = server.requests
    assert len(sent) == len(rows) > 600
    assert summary["priority_signal"] == signal
    assert f"priority signal {signal}  LoadGen result" in proc.stdout
    # Every request is one sample's (its deadline); the rows keep their true tiers.
    assert Counter(r.deadline_ns for r in sent) == Counter(int(r["deadline_ns"]) for r in rows)
    assert Counter(int(r["tier"]) for r in rows).keys() == MIX.keys()
    sent_tiers = Counter(r.tier for r in sent)
    if signal == "as-is":
        assert Counter((r.tier, r.deadline_ns) for r in sent) == \
            Counter((int(r["tier"]), int(r["deadline_ns"])) for r in rows)
    elif signal == "equal":
        assert sent_tiers == {2: len(sent)}
    else:
        # The workload's mix of tiers (within 5 σ of binomial noise) ...
        for tier, share in MIX.items():
            sd = (len(sent) * share * (1 - share)) ** 0.5
            assert abs(sent_tiers[tier] - len(sent) * share) < 5 * sd, sent_tiers
        # ... whatever the class: each true tier sends every level, mostly not its own.
        true_tier = {int(r["deadline_ns"]): int(r["tier"]) for r in rows}
        pairs = Counter((true_tier[r.deadline_ns], r.tier) for r in sent)
        for tier in MIX:
            own = sum(n for (t, _), n in pairs.items() if t == tier)
            assert all(pairs[(tier, level)] > 0 for level in MIX)
            assert pairs[(tier, tier)] < 0.75 * own


@pytest.mark.parametrize("shape", [(), ("--burstiness", "0.5")], ids=["loadgen", "timer"])
def test_the_same_seed_sends_the_same_requests_whatever_the_signal(tmp_path, shape):
    """Classes, models, arrival counts and tensors are the seed's alone."""
    runs = {}
    for signal in ("as-is", "equal", "shuffled"):
        server = RecordingServer()
        try:
            _, rows, _ = run_with(tmp_path / signal, server, signal, "--total-qps", "200",
                                  "--duration-ms", "2000", *shape)
        finally:
            server.stop()
        ordered = sorted(rows, key=lambda r: int(r["sample_id"]))
        runs[signal] = ([(r["tier"], r["slo"], r["model"]) for r in ordered],
                        Counter(hashlib.sha1(r.input_tensor_raw).digest()
                                for r in server.requests))
    assert runs["as-is"] == runs["equal"] == runs["shuffled"]
    assert len(runs["as-is"][0]) > 300


def test_equal_sends_the_middle_tier_and_the_mix_counts_fractions(tmp_path):
    (tmp_path / "mix.toml").write_text(WORKLOAD)
    workload = load_workload_file(tmp_path / "mix.toml")
    assert PrioritySignal.of("equal", workload).tier(1, 3) == 2
    assert PrioritySignal.of("as-is", workload).tier(1, 3) == 1
    assert PrioritySignal.of("shuffled", workload).tier(1, 3) == 3
    assert dict(tier_mix(workload.classes)) == pytest.approx(MIX)

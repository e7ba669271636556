"""How wide the 95 % intervals of a priority sweep are with 1, 3, 5 ... repeats: reads a folder
written by `python -m fastload.sweep --priority-signal as-is,equal --repeats N` at one rate and
prints, for the first n repeats of each condition, the verdict and each class's as-is
attainment and as-is − equal gain with their half-widths (n = 1: 1-second batch means).

    python bench/repeat_widths.py sweeps/priority [1,3,5]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from fastload.results.sweep_stats import aggregate, priority_effect


def _half(interval: dict) -> str:
    return "–" if interval["high"] is None else f"±{interval['high'] - interval['mean']:.1f}"


def main(folder: Path, counts: list[int]) -> None:
    points = json.loads((folder / "sweep.json").read_text())["points"]
    for n in counts:
        subset = [p for p in points if p["repeat"] < n]
        for base, effect in priority_effect(subset, folder).items():
            means = {(m["series"], r["tier"], r["slo"]): r["slo_attainment_pct"]
                     for m in aggregate(subset, folder) for r in m["rows"]}
            print(f"n={n} {base}: {effect['verdict']}: {effect['why']}")
            for rate in effect["rates"]:
                for row in rate["rows"]:
                    attainment = means[(effect["as_is"], row["tier"], row["slo"])]
                    gain = row["attainment_gain"]
                    print(f"  {rate['target_qps']:g} QPS tier {row['tier']} {row['slo']:<8} "
                          f"equal {row['equal_attainment_pct']:5.1f}  as-is "
                          f"{attainment['mean']:5.1f} {_half(attainment):>6}  gain "
                          f"{gain['mean']:+6.1f} {_half(gain):>6}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(n) for n in (sys.argv[2] if len(sys.argv) > 2
                                              else "1,3,5").split(",")])

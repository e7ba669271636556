"""The ladder's results for people: the markdown table, the max-rate table, the PASS/FAIL lines,
ladder.json and ladder.png."""
from __future__ import annotations

import json
from pathlib import Path

from contenders import EMPTY
from ladder_stats import baseline_check, check_targets, client_names, fmt, max_qps

_SUSTAINED_MARK = {True: "yes", False: "no", None: "(reference)"}


def markdown_table(points: list[dict]) -> str:
    lines = [
        "| target QPS | client | achieved QPS | % of schedule | CPU µs/req | steady CPU µs/req "
        "| server CPU µs/req | send lag p50 / p99 ms | late vs schedule p99 / max ms "
        "| latency p50 / p99 ms | issue CV (empty) | errors | sustained |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for p in points:
        lines.append(
            f"| {p['target_qps']:g} | {p['contender']} | {fmt(p['achieved_qps'], 1)} "
            f"| {fmt(p['achieved_pct_of_schedule'], 1)} | {fmt(p['cpu_us_per_request'], 0)} "
            f"| {fmt(p['steady_cpu_us_per_request'], 0)} "
            f"| {fmt(p['server_cpu_us_per_request'], 0)} "
            f"| {fmt(p['send_lag_p50_ms'], 2)} / {fmt(p['send_lag_p99_ms'], 2)} "
            f"| {fmt(p.get('late_p99_ms'), 2)} / {fmt(p.get('late_max_ms'), 2)} "
            f"| {fmt(p['latency_p50_ms'], 2)} / {fmt(p['latency_p99_ms'], 2)} "
            f"| {fmt(p['issue_cv'], 3)} ({fmt(p['empty_issue_cv'], 3)}) "
            f"| {'/'.join(str(e) for e in p['errors_per_repeat'])} "
            f"| {_SUSTAINED_MARK[p.get('sustained')]} |"
        )
    return "\n".join(lines)


def plot(points: list[dict], best: dict[str, float | None], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cpu_ax, rate_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name in client_names(points):
        mine = [p for p in points if p["contender"] == name]
        qps = [p["target_qps"] for p in mine]
        sustained = best[name]
        label = f"{name} (max sustained {'none' if sustained is None else f'{sustained:g}'})"
        line, = cpu_ax.plot(qps, [p["steady_cpu_us_per_request"] for p in mine], "o-",
                            label=label)
        cpu_ax.plot(qps, [p["cpu_us_per_request"] for p in mine], ":", color=line.get_color())
        rate_ax.plot(qps, [p["achieved_qps"] for p in mine], "o-", label=label,
                     color=line.get_color())
        for p in mine:
            if not p["sustained"]:
                rate_ax.plot(p["target_qps"], p["achieved_qps"] or 0, "kx", markersize=9)
    top = max((p["target_qps"] for p in points), default=1)
    rate_ax.plot([0, top], [0, top], "k--", linewidth=0.8, label="achieved = target")
    cpu_ax.set(xscale="log", yscale="log", xlabel="target QPS",
               ylabel="client CPU µs / completed request",
               title="client CPU per request (solid: steady, dotted: incl. start-up)")
    rate_ax.set(xlabel="target QPS", ylabel="achieved QPS", title="achieved vs target (x: not sustained: rate, send lag or errors)")
    for ax in (cpu_ax, rate_ax):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _qps(value: float | None, name: str) -> str:
    if name == EMPTY.name:
        return "(reference)"
    return "none" if value is None else f"{value:g}"


def report(result: dict, out: Path) -> None:
    """Table, PASS/FAIL lines, ladder.json and ladder.png from a measured (or loaded) result."""
    points, startup_cpu_s, info = result["points"], result["startup_cpu_s"], result["machine"]
    best = max_qps(points, "send_lag_p99_ms")
    on_schedule = max_qps(points, "late_p99_ms")
    throughput_only = max_qps(points, None)
    checks = check_targets(points, best, throughput_only)
    if "fastload-base" in best:
        checks.append(baseline_check(result["runs"]))
    result.update({"max_sustained_qps": best, "max_qps_late_vs_schedule": on_schedule,
                   "max_qps_ignoring_send_lag": throughput_only,
                   "targets": [{"passed": passed, "check": line} for passed, line in checks]})

    print(f"\n{info['nproc']} CPUs, {info['cpu_model']}, Python {info['python']}, "
          f"grpcio {info['grpcio']}, fastload {info.get('git', '?')}\n`{result['command']}`: "
          f"{result['repeats']} interleaved repeat(s) of {result['duration_ms']} ms per rate, "
          f"medians; one reference scheduler ({' '.join(result['scheduler_args'])}) on the same "
          f"machine\n")
    print(markdown_table(points))
    print("\n| client | max sustained QPS (send lag p99 < 5 ms) | same, late vs schedule p99 "
          "< 5 ms instead | same, ignoring lag | start-up CPU ms |\n|---|---:|---:|---:|---:|")
    for name in result["contenders"]:
        print(f"| {name} | {_qps(best.get(name), name)} | {_qps(on_schedule.get(name), name)} "
              f"| {_qps(throughput_only.get(name), name)} "
              f"| {startup_cpu_s.get(name, 0) * 1000:,.0f} |")
    print()
    for passed, line in checks:
        print(f"{ {True: 'PASS', False: 'FAIL', None: 'N/A '}[passed]}  {line}")

    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "ladder.json", out / "ladder.png"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    plot(points, best, png_path, f"{info['nproc']} CPUs, {info['cpu_model']}; {result['command']}")
    print(f"\nwrote {json_path} and {png_path}")

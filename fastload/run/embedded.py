"""`--embedded`: the reference scheduler started beside the run, on a free port."""
from __future__ import annotations

from fastload.contract.config import RunConfig
from fastload.contract.workload import Workload
from fastload.scheduler.server import DEFAULT_SERVICE_MS
from fastload.scheduler.spawn import SchedulerProcess


def embedded_scheduler(config: RunConfig, host: str = "127.0.0.1") -> SchedulerProcess:
    """The reference scheduler --embedded starts, bound to ``host``, said on stdout; it serves
    its Prometheus metrics on a free port, for the run to scrape."""
    policy = ("--policy", config.embedded_policy, "--gpus", str(config.embedded_gpus))
    scheduler = SchedulerProcess(*policy, *_input_shapes(config.workload), "--metrics-port", "0",
                                 host=host)
    print(f"fastload: embedded reference scheduler on {scheduler.address} "
          f"({' '.join(policy)})", flush=True)
    return scheduler


def _input_shapes(workload: Workload) -> list[str]:
    """--input-shape flags that make the reference's KServe metadata fit the workload's
    shapes (first dimension -1, the batch), for the models it serves by default."""
    return [f"--input-shape={model}=" + "x".join(map(str, (-1, *shape[1:])))
            for model, shape in workload.model_shapes.items()
            if model in DEFAULT_SERVICE_MS and shape]

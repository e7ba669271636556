"""Where samples are issued: arrival processes (LoadGen, or a timer) and their pipes."""
from fastload.arrivals.loadgen import (PERF_SAMPLE_COUNT, TOTAL_SAMPLES, ArrivalPlan,
                                       LoadGenVerdict, loadgen_settings, plan_arrivals,
                                       read_loadgen_verdict, run_loadgen)
from fastload.arrivals.pipe import (ARRIVAL, COMPLETION, KIND_ISSUED, Arrivals, IssuedSample,
                                    Issuer)
from fastload.arrivals.timer import TimedArrivals, TimerPlan, run_timer
from fastload.arrivals.trace import TraceError, load_trace

__all__ = [
    "ARRIVAL", "COMPLETION", "KIND_ISSUED", "PERF_SAMPLE_COUNT", "TOTAL_SAMPLES", "ArrivalPlan",
    "Arrivals", "IssuedSample", "Issuer", "LoadGenVerdict", "TimedArrivals", "TimerPlan",
    "TraceError", "loadgen_settings", "load_trace", "plan_arrivals", "read_loadgen_verdict",
    "run_loadgen", "run_timer",
]

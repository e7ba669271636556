"""The reference scheduler: a gRPC SchedulerService that queues requests by policy and
simulates GPUs with per-model service times, so fastload has something honest to load.

Layout: `request` parses and validates bytes, `policies` orders the queue, `server` runs the
gRPC front end and the simulated GPUs, `cli` turns flags into a `Config`, `spawn` runs it as a
subprocess for tests and benchmarks.
"""

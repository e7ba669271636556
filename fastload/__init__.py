"""fastload: MLPerf LoadGen Poisson traffic for priority-aware inference schedulers over gRPC."""

__version__ = "0.1.0"

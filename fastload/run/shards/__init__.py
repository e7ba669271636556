"""Ray shard mode (``--ray``): one run split over several machines, merged into one CSV and summary.

``partition`` makes each shard's run, ``clock`` measures a shard's clocks against the driver's,
``actor`` runs a shard in a Ray actor behind a start gate, ``merge`` turns the rows the shards
stream back into one CSV and one run's statistics, and ``driver`` does the rest: place, start,
stream, report. Nothing is imported here: only ``actor`` and ``driver`` import Ray, and only a
run with --ray imports them, so the core install never needs Ray.
"""

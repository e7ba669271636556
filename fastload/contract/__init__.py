"""The ground floor: what a run is asked to do (``config``, ``workload``, ``rates``,
``arrival_times``, ``thresholds``) and how it may end (``exits``, ``verdicts``).

Every other part of fastload imports from here; nothing here imports anything of fastload
outside this package, so no import circle can pass through it. Nothing is imported in this file:
an arrival process loads only the modules its own source needs.
"""

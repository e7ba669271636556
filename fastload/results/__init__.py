"""What records add up to: a run's statistics in bounded memory (``stats``), its summary table
and JSON (``summary``), --fail-if checked against it (``thresholds``), and, read back from the
CSVs, the report (``runs``, ``figures``, ``page``) and a sweep's table (``sweep_table``)."""

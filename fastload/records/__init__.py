"""The records wing: one record per issued sample and its CSV row (``row``), the Recorder that
streams closed records to the CSV and the run's statistics (``recorder``), and the one reader of
that CSV (``reader``)."""

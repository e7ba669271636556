"""Carrying out a RunConfig: on this machine (``local``), or as Ray shards on several
(``shards``); both start as ``conclude.opening_line`` says and end through ``conclude.conclude``.
``outputs`` prepares the files, ``progress`` is the live status line, ``embedded`` the reference
scheduler started beside a run."""

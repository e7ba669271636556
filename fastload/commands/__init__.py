"""The commands: each turns its flags into the contract's types and hands over, printing errors
as one line with their exit code. ``run`` (`python -m fastload`), ``sweep``, ``report`` and
``scheduler`` (the reference scheduler); ``argparsing`` is the parser they share. Nothing below
this floor imports a command; the entry points (``fastload/__main__.py``, ``fastload/sweep.py``,
``fastload/report.py``, ``fastload/scheduler/__main__.py``) import nothing else."""

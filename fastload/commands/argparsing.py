"""The argument parser of every fastload command (run, sweep, report, reference scheduler)."""
from __future__ import annotations

import argparse
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """Bad flags give one line on stderr and exit 2, so scripts can show it as is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

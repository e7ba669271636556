"""`python -m fastload.report`: runs as one HTML report (``fastload.commands.report``)."""
import sys

from fastload.commands.report import main

if __name__ == "__main__":
    sys.exit(main())

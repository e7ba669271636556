"""`python -m fastload.sweep`: one run per offered load, workload and policy
(``fastload.commands.sweep``)."""
import sys

from fastload.commands.sweep import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m metricache``: the command line (see :mod:`metricache.cli`)."""

from metricache.cli import main

if __name__ == "__main__":
    main(prog_name="metricache")

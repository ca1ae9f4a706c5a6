"""``python -m tfcompress`` is the same as the ``tfcompress`` command."""

from tfcompress.cli import run_main

if __name__ == "__main__":
    run_main()

"""Entry point of ``bazel run //:cli``.

The CLI's own ``tfcompress/__main__.py`` cannot be a py_binary main: Python
puts the script's folder first on ``sys.path``, where ``tfcompress/inspect``
would shadow the standard library's ``inspect``.
"""

from tfcompress.cli import run_main

if __name__ == "__main__":
    run_main()

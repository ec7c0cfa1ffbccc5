#!/usr/bin/env python3
"""Start the dialer: the same as `callback-dialer run` (or `callback-dialer demo` with --demo)."""

import sys

from callback_dialer.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--demo" in args:
        args.remove("--demo")
        sys.exit(main(["demo", *args]))
    sys.exit(main(["run", *args]))

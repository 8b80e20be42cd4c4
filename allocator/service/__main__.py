"""``python -m allocator.service [--host H] [--port P]``: the same as ``allocator serve``."""

import sys


if __name__ == "__main__":
    import argparse

    from ..cli import serve_cmd

    parser = argparse.ArgumentParser(prog="python -m allocator.service")
    sub = parser.add_subparsers(dest="command")
    serve_cmd.register(sub)
    args = parser.parse_args(["serve", *sys.argv[1:]])
    sys.exit(args.handler(args) or 0)

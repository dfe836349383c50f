"""The ``xscan`` command: a thin layer over the library.

Each capability registers its own subcommand(s) from a ``commands`` module with
``register(subparsers)``; those modules import only the standard library at import time so
that ``xscan --help`` is fast and works on a torch-free install.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from xscan import __version__

# Order is the order shown by ``xscan --help``.
COMMAND_MODULES = (
    "xscan.synth.commands",  # synth
    "xscan.data.commands",  # data convert|stats|check
    "xscan.train.commands",  # train
    "xscan.metrics.commands",  # eval
    "xscan.export.commands",  # export
    "xscan.runtime.commands",  # info, predict
    "xscan.score.commands",  # score
    "xscan.serve.commands",  # serve
    "xscan.demo",  # demo
)


class UserError(Exception):
    """An error the user can act on: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xscan",
        description="xscan: AI-assisted X-ray security screening toolkit.",
    )
    parser.add_argument("--version", action="version", version=f"xscan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and (name == e.name or name.startswith(e.name + ".")):
                # capability not part of this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UserError, ValueError, FileNotFoundError, PermissionError) as e:
        if args.verbose:
            raise
        print(f"xscan {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())

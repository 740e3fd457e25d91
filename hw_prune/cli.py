"""The `hw_prune` entry point. Each subcommand lives in hw_prune/commands/<name>.py and defines
NAME, HELP, add_arguments(parser) and run(args) -> dict. `--json` prints that dict as one JSON
object on stdout; human output always goes to stderr."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
from types import ModuleType
from typing import Any, Sequence

import hw_prune
from hw_prune.errors import UserError

# Order shown in --help; modules not listed here are appended alphabetically.
ORDER = ("demo", "train", "stat", "ana", "prune", "finetune", "transform", "measure", "profile",
         "quantize", "build", "deploy")


def _command_modules() -> list[ModuleType]:
    import hw_prune.commands as pkg

    names = [m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")
             and m.name != "common"]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    mods = [importlib.import_module(f"hw_prune.commands.{n}") for n in names]
    return [m for m in mods if hasattr(m, "NAME") and hasattr(m, "run")]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        self.exit(2, f"hw_prune {self.prog.split(' ', 1)[-1]}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hw_prune", description="Latency-targeted channel pruning for FPGA edge boards.")
    parser.add_argument("--version", action="version", version=f"hw_prune {hw_prune.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout (human output on stderr)")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        result: dict[str, Any] = args._run(args) or {}
    except UserError as e:
        print(f"hw_prune {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"hw_prune {args.command}: interrupted; finished work is saved and a rerun resumes", file=sys.stderr)
        return 130
    except Exception as e:  # an unexpected failure is a bug: one line unless asked for the traceback
        if os.environ.get("HW_PRUNE_DEBUG"):
            raise
        print(f"hw_prune {args.command}: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
              " (rerun with HW_PRUNE_DEBUG=1 for the traceback and report it)", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

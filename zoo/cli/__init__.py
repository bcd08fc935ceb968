"""The ``zoo`` command: one small module per subcommand, imported only when it runs.

``zoo --help`` and ``zoo list`` start no TensorFlow training stack: this module imports nothing
of the zoo, and each subcommand's module (``zoo/cli/<module>.py``) is imported only when that
subcommand is asked for. Each such module defines ``add_arguments(parser)`` and
``run(args) -> int``; the exit-code rule lives here, once, for every command:

    0  done                 2  bad input: a :class:`zoo.errors.ZooError` (one line, no traceback)
    1  the run failed       130  interrupted
       (or the disk is full: one line, and the same command resumes)
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Sequence

# subcommand -> (module under zoo.cli, one-line help); the table is the whole dispatch
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("models", "registered models: name, family, params, FLOPs, input size"),
    "info": ("models", "params, FLOPs, input size and downsampling sites of a model"),
    "train": ("train", "train a recipe (file or name in recipes/)"),
    "eval": ("evaluate", "evaluate a run or weights on a dataset split"),
    "train-distributed": ("distributed", "train a recipe on several workers/GPUs (tf.distribute)"),
    "tune": ("tune", "keras-tuner search over a recipe's downsampling choices"),
    "study": ("study", "pool-or-stride studies across architectures"),
    "bench": ("bench", "throughput: train/infer step, --sweep, --peers, --pipeline, --settings"),
    "weights": ("weights", "published weights: tag, metric, size, where the file is"),
    "publish": ("weights", "publish a training run's weights into the weights registry"),
    "convert": ("weights", "convert keras.applications / torchvision / FishNet weights"),
}
NO_TENSORFLOW = ("weights",)  # commands that answer from files alone
DESCRIPTION = ("zoo: exact All-CNN, ResNet, SqueezeNet, FishNet and VGG builders with switchable "
               "downsampling; train, search and compare them.")


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="commands:\n" + "\n".join(f"  {name:<18} {text}"
                                                                      for name, (_, text) in COMMANDS.items()))
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's start-up notices")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of the commands below")
    return parser


def import_tensorflow_quietly() -> None:
    """Import TensorFlow (and Keras) with its C++ start-up notices — the absl "before
    InitializeLog" warning and the oneDNN notice, printed twice, that no environment variable
    silences — sent to /dev/null; Python errors still raise normally afterwards."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401  (imports tensorflow)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def command_parser(command: str) -> tuple[argparse.ArgumentParser, object]:
    """The parser of one subcommand and the module that runs it (imports that module only)."""
    module_name, text = COMMANDS[command]
    module = importlib.import_module(f"zoo.cli.{module_name}")
    parser = argparse.ArgumentParser(prog=f"zoo {command}", description=text)
    module.add_arguments(parser, command)
    return parser, module


def parse_args_with_overrides(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None):
    """``parser.parse_args`` that also takes ``key=value`` overrides after options
    (``zoo train R --overwrite train.epochs=3``), which argparse alone rejects once an option has
    ended the positional ``overrides``. Anything else left over is the usual argparse error."""
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e]
    if stray or (extra and not isinstance(getattr(args, "overrides", None), list)):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """``zoo [-v] COMMAND [args...]``: parse, run, and map errors to the exit-code rule above."""
    argv = list(sys.argv[1:] if argv is None else argv)
    top, rest = _top_parser(), argv
    verbose = bool(rest) and rest[0] in ("-v", "--verbose")
    if verbose:
        rest = rest[1:]
    if not rest or rest[0] not in COMMANDS:
        top.parse_args(rest or ["--help"])  # prints help or the argparse error and exits
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
    command, rest = rest[0], rest[1:]
    from zoo.errors import ZooError  # keras-free
    from zoo.runtime import check_keras_home  # keras-free

    try:
        check_keras_home()  # before Keras reads it
        if not verbose and command not in NO_TENSORFLOW:
            import_tensorflow_quietly()
        parser, module = command_parser(command)
        args = parse_args_with_overrides(parser, rest)
        args.command = command
        return int(module.run(args) or 0)
    except ZooError as err:
        print(f"zoo {command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:  # a full disk (zoo.report.DiskFullError names the file and the space): one line
        if err.errno != errno.ENOSPC:
            raise
        fix = "" if "same command again" in str(err) else "; free some space and run the same command again"
        print(f"zoo {command}: error: {err}{fix}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"zoo {command}: interrupted", file=sys.stderr)
        return 130

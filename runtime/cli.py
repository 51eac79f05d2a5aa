"""The one way spamcam's console scripts end: what each failure prints and which exit code it gives.

Every console script (train-cam, eval-cam, export-onnx, quantize-int8, build-engine, compare-backends,
edge_app, fetch-mnist) parses its arguments and then hands its work to `run_cli`, so that all of them
answer the same fault the same way — a camera script or a CI job can rely on the codes:

    0    done
    2    the user must fix something: a `SpamcamError` or an `OSError` (one line: what and what to do);
         argparse also exits 2 for a malformed command line
    1    a bug: an exception spamcam did not expect (one line, and how to see the traceback)
    130  interrupted (Ctrl-C, SIGINT) — 143 for SIGTERM — with what was kept
    141  stdout was closed by the reader (`... --json - | head`): quietly, like other Unix tools

    3    edge_app: the live source was lost and did not come back
    4    edge_app: an output failed (the summary says what was written)
    5    a check the user asked for failed (export-onnx --verify)
Set SPAMCAM_TRACEBACK=1 to let any exception through with its traceback.
"""
from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys
from typing import Any, Callable

from runtime.errors import SpamcamError

__all__ = ["run_cli", "number", "word_or", "min_max", "BadValue", "checked", "silence_stdout", "describe_os_error", "EXIT_USAGE", "EXIT_BUG", "EXIT_SOURCE_LOST", "EXIT_OUTPUT_FAILED",
           "EXIT_CHECK_FAILED", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "EXIT_BROKEN_PIPE"]

EXIT_USAGE = 2
EXIT_BUG = 1
EXIT_SOURCE_LOST = 3
EXIT_OUTPUT_FAILED = 4
EXIT_CHECK_FAILED = 5
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE

# What to do about the OS errors a user meets; the OS's own words say what happened.
_OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free space or write somewhere else",
    errno.EDQUOT: "the disk quota is used up: free space or write somewhere else",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.EACCES: "no permission: write somewhere else or change the folder's permissions",
    errno.EPERM: "not permitted: write somewhere else or change the folder's permissions",
    errno.ENOENT: "check the path; a missing folder is not created for you",
    errno.EISDIR: "that is a folder: give a file name",
    errno.ENOTDIR: "a part of that path is a file, not a folder",
    errno.EEXIST: "it exists already: remove it or give another name",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program runs so that it unwinds (and keeps its work) as on Ctrl-C."""


def describe_os_error(error: OSError) -> str:
    """One line for an OSError: the path, the OS's reason, and what to do about it."""
    if isinstance(error, SpamcamError):
        return str(error)
    reason = error.strerror or str(error)
    where = f"{error.filename}: " if error.filename is not None else ""
    advice = _OS_ADVICE.get(error.errno or -1)
    return f"{where}{reason}" + (f" ({advice})" if advice else "")


def _raise_terminated(signum, frame):  # noqa: ARG001 — the signal module's handler signature
    raise Terminated()


def run_cli(prog: str, work: Callable[[], int | None], *, interrupted: str = "nothing more was written") -> int:
    """Run a console script's `work` and turn how it ended into a message and an exit code.

    `interrupted` says what is kept when the user stops the run (e.g. "the last completed epoch's
    checkpoint is kept"); it is printed on Ctrl-C and SIGTERM.
    """
    if os.environ.get("SPAMCAM_TRACEBACK"):
        return work() or 0
    previous = _install_sigterm()
    try:
        return work() or 0
    except SpamcamError as error:
        _say(f"{prog}: error: {error}")
        return EXIT_USAGE
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as error:
        _say(f"{prog}: error: {describe_os_error(error)}")
        return EXIT_USAGE
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        _say(f"\n{prog}: {'terminated' if terminated else 'interrupted'}; {interrupted}")
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except MemoryError:
        _say(f"{prog}: error: out of memory: use smaller inputs or batches, or a machine with more memory")
        return EXIT_USAGE
    except Exception as error:  # a bug: say so in one line, and how to see where
        _say(f"{prog}: internal error: {type(error).__name__}: {error}\n"
             f"{prog}: this is a bug; run again with SPAMCAM_TRACEBACK=1 to see where, and please report it")
        return EXIT_BUG
    finally:
        _restore_sigterm(previous)


class BadValue(argparse.ArgumentTypeError, ValueError):
    """An option value refused in plain words; a ValueError too, so that a bad value in a `--config`
    file is reported by its key like a bad option on the command line (runtime/config_cli.py)."""


def number(kind: type, *, minimum: float | None = None, above: float | None = None):
    """An option type: a finite number of `kind`, at least `minimum` / above `above`, refused in plain
    words otherwise (`--max-frames -5`, `--min-score nan`, `--reconnect-timeout -1` used to be accepted).
    Takes the text of a command line or a number from a config file (`epochs: 8`; `epochs: 7.5` is not
    an integer)."""
    def parse(text):
        if isinstance(text, bool) or (kind is int and isinstance(text, float) and not text.is_integer()):
            raise BadValue(f"{text!r} is not a{'n integer' if kind is int else ' number'}")
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise BadValue(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if not math.isfinite(value):
            raise BadValue(f"{text!r} is not a finite number")
        if minimum is not None and value < minimum:
            raise BadValue(f"{text} is below {minimum:g}")
        if above is not None and value <= above:
            raise BadValue(f"{text} must be above {above:g}")
        return value
    return parse


def word_or(word: str, parse: Callable[[Any], Any], hint: str) -> Callable[[Any], Any]:
    """An option type taking `word` (returned as it is: 'auto', 'same') or what `parse` takes; a value
    `parse` refuses is told `hint` too, so the error names both ways of answering."""
    def parse_word_or_value(text):
        if str(text).strip().lower() == word:
            return word
        try:
            return parse(text)
        except BadValue as error:
            raise BadValue(f"{error}; {hint}") from None
    return parse_word_or_value


def checked(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """An option type from a parser that raises a ValueError (a `ConfigError`) with its own words,
    which argparse would otherwise replace by "invalid value"."""
    def option_type(value):
        try:
            return parse(value)
        except BadValue:
            raise
        except ValueError as error:
            raise BadValue(str(error)) from None
    option_type.__name__ = getattr(parse, "__name__", "value")
    return option_type


def min_max(text) -> tuple[int, int]:
    """An option type for MIN,MAX counts (e.g. `--objects 1,3`, or `[1, 3]` in a config file): two
    integers, 1 <= MIN <= MAX."""
    try:
        parts = text.split(",") if isinstance(text, str) else list(text)
        low, high = (int(part) for part in parts)
    except (TypeError, ValueError):
        raise BadValue(f"{text!r} is not MIN,MAX (two integers, e.g. 1,3)") from None
    if not 1 <= low <= high:
        raise BadValue(f"{text!r}: need 1 <= MIN <= MAX")
    return low, high


def _say(message: str) -> None:
    try:
        print(message, file=sys.stderr)
    except (OSError, ValueError):  # stderr itself is gone: the exit code still says it
        pass


def silence_stdout() -> None:
    """After a reader closed stdout, point it at /dev/null so that Python's exit flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _install_sigterm():
    """SIGTERM unwinds like Ctrl-C (finally blocks run, files are closed); only the main thread can set it."""
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (a test runner, an embedding application)
        return None


def _restore_sigterm(previous) -> None:
    if previous is not None:
        try:
            signal.signal(signal.SIGTERM, previous)
        except ValueError:
            pass

"""The one convention every `python -m scaling.X` command follows for logging and exit codes.

    exit 0  done
    exit 1  a runtime failure: a run failed, a job died, the scheduler did not answer
    exit 2  the input is wrong (a config key, a file, an argument): fix it and run again

Library code raises `InputError` (or a subclass: `ConfigError`, `TokenStoreError`, ...; and
`contracts.ContractError` for a stage file that cannot be read) for
the second kind and `RuntimeFailure` for the first, and logs through `logging`; only the
entry points below print and choose the exit status. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Callable, Mapping, Sequence

from contracts import ContractError

EXIT_OK, EXIT_FAILURE, EXIT_INPUT = 0, 1, 2


class InputError(ValueError):
    """What the user gave is wrong (a config value, a file, an argument); CLIs exit 2."""


class RuntimeFailure(RuntimeError):
    """The work could not be done although the input was valid; CLIs exit 1."""


def refuse_replaced_flags(argv: Sequence[str], replaced: Mapping[str, str]) -> None:
    """Raise InputError (exit 2) for a command-line flag that was replaced, naming its new
    form: `replaced` maps the old flag (``--method``) to it (``--set method=VALUE``). Both
    ``--flag value`` and ``--flag=value`` are recognised; a short flag also as ``-Evalue``."""
    for arg in argv:
        if arg == "--":
            return
        flag = arg.split("=", 1)[0]
        if flag not in replaced and not arg.startswith("--") and len(arg) > 2:
            flag = arg[:2]  # a short flag with its value attached (-E4.5)
        if flag in replaced:
            raise InputError(f"{flag} was replaced by {replaced[flag]}")


def setup_logging(level: int = logging.INFO) -> None:
    """Plain `message` lines on stderr for a CLI process (library code never calls this)."""
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)


# OSError numbers that mean the user's path is wrong (not writable, missing): exit 2
_INPUT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR}
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# packages whose ValueErrors mean bad input (they cannot import InputError: var_core and the
# torch-free analysis package stand alone)
_LIBRARIES = ("var_core", "analysis", "scaling")


def describe_os_error(e: OSError) -> str:
    """An OSError as one line naming the path and the cause ("no space left on <path>")."""
    path = e.filename if e.filename is not None else "?"
    if e.errno in _FULL_ERRNOS:
        return f"no space left on {path} ({e.strerror or e}); free some space and run again"
    return f"{path}: {e.strerror or e}"


def run_cli(
    body: Callable[[], int | None], *, input_errors: Sequence[type[BaseException]] = ()
) -> int:
    """Run a CLI's `body()` and map its errors to the exit codes above: the one mapping of
    every `python -m scaling.X` command.

    Exit 2, with the message: `InputError`s, the ValueErrors of var_core and analysis (they
    cannot import this module), an OSError on a path the user gave (not writable, missing),
    and `input_errors` (more types that mean bad input). Exit 1: `RuntimeFailure`s and the
    other OSErrors (a full disk says "no space left on <path>"). Returns the exit status; a
    bug (any other exception) keeps its traceback.
    """
    bad_input: tuple[type[BaseException], ...] = (InputError, ContractError, *input_errors)
    try:
        return body() or EXIT_OK
    except bad_input as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except RuntimeFailure as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as e:
        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return EXIT_INPUT if e.errno in _INPUT_ERRNOS else EXIT_FAILURE
    except ValueError as e:
        if type(e).__module__.split(".")[0] not in _LIBRARIES:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INPUT

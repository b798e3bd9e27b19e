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


def run_cli(
    body: Callable[[], int | None], *, input_errors: Sequence[type[BaseException]] = ()
) -> int:
    """Run a CLI's `body()` and map its errors to the exit codes above.

    `input_errors` adds exception types that mean bad input although they are not
    `InputError`s (e.g. `analysis.results.ResultsError`, from the torch-free package that
    cannot import this one). Returns the exit status; never raises for the two known kinds.
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

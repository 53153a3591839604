"""The one answer to Ctrl-C, shared by `python -m dsdistill` (during start-up) and the CLI (during a command)."""
import os
import signal
import sys

EXIT_INTERRUPTED = 130


def interrupted() -> int:
    """One line on stderr and exit code 130; a second Ctrl-C while the process ends is ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("dsdistill: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def exit_process(code: int) -> None:
    """End the process with `code`. An interrupted run leaves through os._exit after flushing: CPython 3.11 marks
    a KeyboardInterrupt raised inside a string exec (dataclasses build methods that way while torch imports) as
    unhandled even when it is caught, and would then end the process by SIGINT (-2) instead of 130 (seen in about
    one interrupt in ten half a second into start-up)."""
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)

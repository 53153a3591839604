"""`python -m dsdistill` and the `dsdistill` script: the CLI, with Ctrl-C during start-up answered in one line."""
import signal

from ._interrupt import exit_process, interrupted

_HOLDS = hasattr(signal, "pthread_sigmask")


def run() -> None:
    """Ctrl-C is held while torch and every method import (a SIGINT inside torch's C++ import aborts the process
    with a C++ message), then, if one came, answered in one line with exit code 130."""
    try:
        if _HOLDS:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        from .cli import main  # seconds
        if _HOLDS:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a held Ctrl-C is raised here
    except KeyboardInterrupt:
        exit_process(interrupted())
    exit_process(main())


if __name__ == "__main__":
    run()

"""`python -m dsdistill` and the `dsdistill` script: the CLI, with Ctrl-C during start-up answered in one line."""
from ._interrupt import exit_process, interrupted


def run() -> None:
    try:
        from .cli import main  # imports torch and every method: seconds, and interruptible
    except KeyboardInterrupt:
        exit_process(interrupted())
    exit_process(main())


if __name__ == "__main__":
    run()

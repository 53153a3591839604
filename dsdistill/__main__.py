"""`python -m dsdistill` and the `dsdistill` script: the CLI, with Ctrl-C during start-up answered in one line."""
import sys


def run() -> None:
    try:
        from .cli import main  # imports torch and every method: seconds, and interruptible
    except KeyboardInterrupt:
        print("dsdistill: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())


if __name__ == "__main__":
    run()

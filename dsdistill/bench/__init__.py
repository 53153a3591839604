"""The shared benchmark: suites (TOML) -> runner -> append-only result store -> leaderboard and plots."""
from .imports import adopt_remade, import_reports
from .report import build_tables, write_report
from .runner import Runner, Summary, plan, run_suite, select_cells
from .store import DEFAULT_STORE, Store
from .suite import REFERENCES, Cell, Suite, load_suite, parse_suite

__all__ = ["DEFAULT_STORE", "REFERENCES", "Cell", "Runner", "Store", "Suite", "Summary", "adopt_remade",
           "build_tables", "import_reports", "load_suite", "parse_suite", "plan", "run_suite", "select_cells",
           "write_report"]

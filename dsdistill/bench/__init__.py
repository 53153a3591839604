"""The shared benchmark: suites (TOML) -> runner -> append-only result store -> leaderboard and plots."""
from .imports import adopt_folder, adopt_remade, import_folders, import_reports
from .manifest import verify_manifest, write_manifest
from .report import build_tables, regenerate, write_report
from .runner import Runner, Summary, bench_suite, plan, plan_suite, run_suite, select_cells
from .store import DEFAULT_STORE, Store, open_store
from .suite import REFERENCES, Cell, Suite, load_suite, parse_suite
from .whole import WholeScore, score_whole

__all__ = ["DEFAULT_STORE", "REFERENCES", "Cell", "Runner", "Store", "Suite", "Summary", "WholeScore", "adopt_folder",
           "adopt_remade", "bench_suite", "build_tables", "import_folders", "import_reports", "load_suite",
           "open_store", "parse_suite", "plan", "plan_suite", "regenerate", "run_suite", "score_whole",
           "select_cells", "verify_manifest", "write_manifest", "write_report"]

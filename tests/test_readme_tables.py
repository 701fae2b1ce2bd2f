"""The README's results tables are the ones scripts/readme_tables.py generates from docs/benchmarks/*.json."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_quotes_the_results_files():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (ROOT / "README.md").read_text()
    for spec_ in (module.ML100K, module.ML1M):
        assert module.readme_table(*spec_) in readme, "README.md: regenerate with python scripts/readme_tables.py"

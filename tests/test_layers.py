"""The architecture as rules: which layer may import which, where SQL and commits live, one CLI convention,
small modules and no repeated blocks (docs/architecture.md explains each rule)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.code_shape import repeated_blocks
from tests.conftest import REPO

LIB = REPO / "lib"
MAX_MODULE_LINES = 300
# What each room of lib/ may import from lib/, besides itself (errors, settings, cli and cpu are everyone's).
ALLOWED = {
    "store": set(),
    "data": {"store"},
    "model": {"store", "data"},
    "ingest": {"store", "data", "model"},
    "serve": {"store", "data", "model"},
    "captions": {"store", "data", "model"},
}
SHARED = {"lib.errors", "lib.settings", "lib.cli", "lib.cpu"}
ENTRY_POINTS = ["build_image_index.py", "build_text_index.py", "score_captions.py", "find_duplicates.py",
                "lib/model/train.py", "lib/model/evaluate.py", "lib/data/synthetic.py", "lib/ingest/export.py",
                *(p.relative_to(REPO).as_posix()
                                                                    for p in sorted((REPO / "bench").glob("[!_]*.py")))]


def python_files(*folders: Path) -> list[Path]:
    return sorted(path for folder in folders for path in folder.rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "lib" and parts[1] in ALLOWED else None


@pytest.mark.parametrize("module", sorted(f"lib.store.{p.stem}" for p in (LIB / "store").glob("[!_]*.py")))
def test_store_loads_neither_torch_nor_transformers(module):
    check = f"import sys, {module}; print(sorted({{'torch', 'transformers'}} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing {module} loaded {result.stdout.strip()}"


def within(module: str, names: set[str]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in names)


@pytest.mark.parametrize("path", python_files(LIB), ids=lambda p: p.relative_to(REPO).as_posix())
def test_each_room_imports_only_the_rooms_below_it(path):
    parts = path.relative_to(LIB).parts
    own = parts[0] if len(parts) > 1 else None
    imports = {m for m in imported_modules(path) if m.split(".")[0] in ("lib", "api")}
    assert not [m for m in imports if m.split(".")[0] == "api"], "lib/ never imports api/"
    if own is None:
        return
    shared = {"lib.errors"} if own == "store" else SHARED
    for module in imports:
        target = room(module)
        if module == "lib" or within(module, shared) or target == own:
            continue
        assert target in ALLOWED[own], f"lib/{own} may not import {module}"


SQL_MODULES = {LIB / "store" / "catalog.py", LIB / "store" / "catalog_search.py",  # queries: the build's, the search's
               LIB / "store" / "catalog_words.py",  # words read in pictures
               LIB / "store" / "catalog_schema.py",  # tables and migrations
               LIB / "store" / "catalog_check.py",  # integrity and copies
               LIB / "store" / "postgres.py", LIB / "store" / "postgres_vectors.py",  # the store database
               LIB / "store" / "postgres_dataset.py", LIB / "store" / "postgres_rows.py",
               LIB / "store" / "postgres_catalog.py"}  # the catalog a server reads from the database


def test_all_sql_is_in_the_catalog():
    offenders = [p.relative_to(REPO).as_posix() for p in python_files(LIB, REPO / "api", REPO / "bench")
                 if p not in SQL_MODULES and (".execute(" in p.read_text() or "sqlite3.connect" in p.read_text())]
    assert offenders == []


def test_one_function_commits_a_partition():
    """apply_partition (the catalog half of a commit) is called only by commit_partition."""
    callers = [p.relative_to(REPO).as_posix() for p in python_files(LIB, REPO / "bench", REPO / "api")
               if ".apply_partition(" in p.read_text()]
    assert callers == ["lib/store/index_files.py"]


@pytest.mark.parametrize("path", python_files(LIB), ids=lambda p: p.relative_to(REPO).as_posix())
def test_library_code_never_exits_or_sets_up_logging(path):
    if path == LIB / "cli.py":
        return
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            assert not (isinstance(raised, ast.Name) and raised.id == "SystemExit"), f"line {node.lineno}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in ("exit", "basicConfig"), f"line {node.lineno}: {ast.unparse(node.func)}"


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_runs_through_lib_cli(entry):
    source = (REPO / entry).read_text()
    assert "sys.path" not in source
    main = next(node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "main")
    calls = [node.func.id for node in ast.walk(main) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    assert "run" in calls and set(calls) <= {"run", "make_parser"}, f"{entry}: main() should only call lib.cli.run"


@pytest.mark.parametrize("command, program", [
    (["-m", "lib.train", "out", "--data", "/nonexistent-folder"], "train"),
    (["-m", "lib.model.train", "out", "--data", "/nonexistent-folder"], "train"),
    (["score_captions.py", "/nonexistent.csv"], "score_captions"),
    (["build_image_index.py", "bad name!", "/tmp"], "build_image_index"),
])
def test_user_errors_are_one_line_with_status_2(command, program, tmp_path):
    result = subprocess.run([sys.executable, *command], cwd=tmp_path if command[0] == "-m" else REPO,
                            env={"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith(f"{program}: error: ") and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("module", ["lib.evaluate", "lib.train", "lib.data.synthetic", "bench.encode_speed",
                                    "bench.api_load", "bench.api_abuse", "bench.caption_scale", "bench.ray_engine",
                                    "bench.duplicate_tiers", "bench.duplicates_scale", "bench.large_collection",
                                    "bench.catalog_filters", "bench.video_speed", "lib.ingest.export"])
def test_modules_run_with_python_m(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr


@pytest.mark.parametrize("path", python_files(LIB), ids=lambda p: p.relative_to(REPO).as_posix())
def test_modules_are_small(path):
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


def test_no_block_is_repeated_in_lib_or_api():
    assert repeated_blocks(python_files(LIB, REPO / "api")) == []


def test_the_repeat_finder_sees_a_copy_with_other_names(tmp_path):
    body = "def {0}(items, limit):\n    kept = []\n    for item in items:\n        if item.size > limit:\n" \
           "            kept.append(item.name)\n            log.info('kept %s', item.name)\n    return sorted(kept)\n"
    (tmp_path / "a.py").write_text(body.format("large_names"))
    (tmp_path / "b.py").write_text(body.format("big_ones").replace("size", "bytes").replace("kept", "chosen"))
    (tmp_path / "c.py").write_text("def other(x):\n    return x + 1\n")
    found = repeated_blocks(sorted(tmp_path.glob("*.py")))
    assert found and {place[0] for place in found[0]} == {"a.py", "b.py"}

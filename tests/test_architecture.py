"""The house: entry points at the root, one package per layer, imports running one way, files and functions a
reader can hold at once. Read from the source, so a new module is checked the day it is added."""

from __future__ import annotations

import importlib.util
import re

from tests.architecture import PACKAGES, ROOT, closure, cycles, graph, long_functions, modules, statements

ENTRY_POINTS = {"app", "db", "server", "train", "utils"}
FACADES = {"utils": "inference", "db": "storage"}  # the root's doors to a package, for entry points and outside users
# Which layer may import which. config is the bottom (paths and the one Settings); inference is the model, its
# checkpoints and preprocessing; storage knows only the labels inference defines. Packages import packages, never a
# root module: the façades are the entry points' and outside users' door, not the packages'.
ALLOWED = {
    "config": {"config"},
    "inference": {"config", "inference"},
    "storage": {"config", "storage", "inference"},
    "access": {"config", "access"},
    "views": {"config", "views", "access", "storage", "inference"},
    "serve": {"config", "serve", "access", "storage", "inference"},  # what the page and the API share
    "training": {"config", "training", "inference", "storage"},  # retraining reads the feedback from storage
}
# Where `os.environ` may be read: the settings, and the tools and tests (which start processes with environments).
ENVIRON_READERS = {"config.settings"}
# MLflow's own switch, set (not read as a setting) before MLflow is imported.
ENVIRON_WRITERS = {"training.lifecycle.registry", "training.lifecycle.registry"}


def layer(name: str) -> str:
    return name.split(".")[0]


def test_the_root_holds_only_the_entry_points() -> None:
    root = {path.stem for path in ROOT.glob("*.py")}
    assert root == ENTRY_POINTS and len(root) <= 6
    for package in PACKAGES:
        assert (ROOT / package / "__init__.py").is_file(), f"{package}/ is a package"
    assert not (ROOT / "pages").exists(), "Streamlit treats a pages/ folder as extra pages"


def test_no_import_cycle_counting_imports_inside_functions() -> None:
    edges = graph()
    assert not cycles(edges), f"import cycles: {cycles(edges)}"
    # The check itself sees a cycle where there is one (imports inside a function count too).
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_every_import_finds_its_module() -> None:
    """An import inside a function runs only when it is called: one left naming a module by its old place would
    pass every test that does not call it."""
    names = {name for path in modules().values() for name in statements(path)}
    missing = sorted(name for name in names if importlib.util.find_spec(name) is None)
    assert not missing, f"imports of modules that do not exist: {missing}"


def test_layers_import_one_way() -> None:
    edges = graph()
    wrong = [
        f"{name} imports {imported}"
        for name, imports in edges.items()
        if layer(name) in ALLOWED
        for imported in imports
        if layer(imported) not in ALLOWED[layer(name)]
    ]
    assert not wrong, wrong
    assert "train" not in closure(
        {"training.lifecycle.promotion", "training.retrain", "training.lifecycle.experiments"}, edges
    )


def test_entry_points_reach_inference_and_storage_through_their_facades() -> None:
    """app.py, server.py and train.py import `utils` and `db`, never inference/ or storage/ behind them; the
    façades themselves are the only root modules that do."""
    edges = graph()
    wrong = [
        f"{name} imports {imported}: use {door}"
        for name in ENTRY_POINTS - set(FACADES)
        for imported in edges[name]
        for door, package in FACADES.items()
        if layer(imported) == package
    ]
    assert not wrong, wrong


def test_only_the_settings_module_reads_the_environment() -> None:
    """One typed Settings, read after `.env` (config/settings.py); a module reading os.environ itself would see a
    value before `.env` is loaded, or parse it its own way."""
    readers = [
        name
        for name, path in modules().items()
        if layer(name) not in ("tools", "tests") and name not in ENVIRON_READERS | ENVIRON_WRITERS
        for text in [path.read_text()]
        if "os.environ" in text or "getenv(" in text or "from storage.config import setting" in text
    ]
    assert not readers, f"read config.settings.settings() instead: {readers}"


def test_no_package_holds_more_than_twelve_modules() -> None:
    counts: dict[str, int] = {}
    for name, path in modules().items():
        if path.stem != "__init__" and layer(name) != "tests":
            counts[name.rsplit(".", 1)[0]] = counts.get(name.rsplit(".", 1)[0], 0) + 1
    crowded = {
        package: n for package, n in counts.items() if n > 12 and "." in package or package in PACKAGES and n > 12
    }
    assert not crowded, f"split along a seam: {crowded}"


def test_files_and_functions_fit_in_a_reader_s_head() -> None:
    known = modules()
    big = [f"{p.relative_to(ROOT)} ({n} lines)" for p in known.values() if (n := len(p.read_text().splitlines())) > 400]
    assert not big, f"files over 400 lines: {big}"
    long = [item for name, path in known.items() if layer(name) != "tests" for item in long_functions(path, 60)]
    assert not long, f"functions over 60 lines: {long}"


def test_tests_import_the_project_without_patching_sys_path() -> None:
    needle = "sys.path" + ".insert"  # spelt in two, or this file would find itself
    patched = [p.name for p in (ROOT / "tests").rglob("*.py") if needle in p.read_text()]
    assert not patched, f"pytest's pythonpath setting finds the project: {patched}"
    makefile = (ROOT / "Makefile").read_text()
    assert not re.search(r"\$\(PY\)\s+tests/", makefile), "the Makefile runs tools, never a script in tests/"

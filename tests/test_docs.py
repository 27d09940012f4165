"""The documentation site: it builds offline with warnings as errors, and every example runs.

Each page's ``python`` blocks run in order in one namespace, in a fresh folder; a
block starting with ``# file: NAME.py`` is also written there as a module. Lines
``$ metricache ...`` of ``console`` blocks run through the command line, each
expected to succeed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from metricache.cli import main

from .test_cli import fresh_workers

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(page: str) -> list[tuple[str, str]]:
    return BLOCK.findall((DOCS / page).read_text(encoding="utf-8"))


def run_console(code: str) -> None:
    for line in code.splitlines():
        if not line.startswith("$ metricache "):
            continue  # pip and make lines: the build runs them
        args = shlex.split(line[2:].split("  #")[0])[1:]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, f"{line}\n{result.output}"


@pytest.mark.parametrize("page", PAGES)
def test_every_example_runs(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict[str, object] = {"__name__": "__main__"}
    modules = set(sys.modules)
    try:
        for lang, code in blocks(page):
            if lang == "python":
                first = code.splitlines()[0]
                if first.startswith("# file: "):
                    module = first[len("# file: ") :]
                    (tmp_path / module).write_text(code, encoding="utf-8")
                    sys.modules.pop(module.removesuffix(".py"), None)  # another test's
                exec(compile(code, f"{page}:python", "exec"), namespace)
            elif lang == "console":
                if "--jobs" in code:
                    fresh_workers()  # they import the page's module from this folder
                run_console(code)
    finally:
        for name in set(sys.modules) - modules:
            if (tmp_path / f"{name}.py").exists():
                del sys.modules[name]


def test_every_page_has_an_example() -> None:
    bare = [p for p in PAGES if p not in ("reference.md", "benchmarks.md") and not blocks(p)]
    assert not bare


def test_site_builds_offline_with_warnings_as_errors(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    reference = (tmp_path / "site" / "reference" / "index.html").read_text(encoding="utf-8")
    assert "metricache.DatedCacheManager.get" in reference  # API pages from docstrings
    assert "fonts.googleapis" not in (tmp_path / "site" / "index.html").read_text()

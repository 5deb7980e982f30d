"""Every relative link of README.md and docs/*.md leads somewhere: the file exists and, with
a ``#fragment`` into a Markdown file, that file has a heading of that anchor (GitHub's
rule: lower case, punctuation other than ``-`` dropped, spaces to ``-``, ``-1``, ``-2`` …
for repeats).

And every name a page gives in code spans (`` `…` ``) is there: a repository path
(``jiesu/ops/demo_data.py``, ``api/errors.MAX_DETAILS`` for a name in a module), a test
(``test_…`` starts the name of a test function or file; ``tests/test_x.py::test_y`` is in that
file) and a ``make`` target. Files that runs write (``.gitignore``'d, e.g. ``bench/results/``)
are not required."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _prose(path: Path) -> list[tuple[int, str]]:
    """The lines of ``path`` outside fenced code blocks, numbered from 1."""
    out, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    repeats: dict[str, int] = {}
    for _, line in _prose(path):
        if match := re.match(r"#{1,6}\s+(.*)", line):
            base = slug(match.group(1))
            count = repeats.get(base, 0)
            repeats[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(paths: list[Path], root: Path = ROOT) -> list[str]:
    out = []
    for path in paths:
        for number, line in _prose(path):
            for target in LINK.findall(line):
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                file, _, fragment = target.partition("#")
                resolved = (path.parent / file).resolve() if file else path
                where = f"{path.relative_to(root)}:{number}: {target}"
                if not resolved.exists():
                    out.append(f"{where} (no such file)")
                elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                    out.append(f"{where} (no such heading)")
    return out


CODE_SPAN = re.compile(r"`([^`\n]+)`")
REPO_PATH = re.compile(
    r"(?<![\w/.-])(?:\.ci|activities|api|bench|deploy|docs|jiesu|scripts|tests|workflows)/"
    r"[\w./<>*-]*[\w/>*](?:::\w+)?"
)
TEST_NAME = re.compile(r"(?:^|::|[\s(])(test_\w+)")
MAKE_TARGET = re.compile(r"\bmake ([a-z][\w-]*)")


def _test_names(root: Path) -> tuple[set[str], dict[str, str]]:
    """Every test function's name and test file's stem, and each test file's text by path."""
    names: set[str] = set()
    texts: dict[str, str] = {}
    for file in (root / "tests").rglob("test_*.py"):
        text = file.read_text(encoding="utf-8")
        texts[file.relative_to(root).as_posix()] = text
        names.add(file.stem)
        names.update(re.findall(r"def (test_\w+)", text))
    return names, texts


def _written_by_runs(root: Path) -> list[str]:
    """The folders .gitignore names inside the repository (a run's results, not docs' facts)."""
    ignore = root / ".gitignore"
    lines = ignore.read_text(encoding="utf-8").splitlines() if ignore.exists() else []
    return [line.strip() for line in lines if "/" in line.strip("/") and line.endswith("/")]


def _path_exists(root: Path, token: str) -> bool:
    file = token.partition("::")[0]
    if "*" in file or "<" in file:  # a pattern: tests/histories/v6-*, tests/test_<file>.py
        return any(root.glob(re.sub(r"<[^>]*>", "*", file)))
    if (root / file).exists():
        return True
    module, _, attribute = file.rpartition(".")  # api/errors.MAX_DETAILS
    source = root / f"{module}.py"
    return bool(attribute) and source.is_file() and attribute in source.read_text(encoding="utf-8")


def missing_names(paths: list[Path], root: Path = ROOT) -> list[str]:
    """The paths, tests and make targets named in code spans that do not exist."""
    tests, test_texts = _test_names(root)
    makefile = root / "Makefile"
    targets = set(re.findall(r"^([\w-]+):", makefile.read_text(encoding="utf-8"), re.M))
    generated = _written_by_runs(root)
    out = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(root)}:{number}:"
            for code in CODE_SPAN.findall(line):
                for token in REPO_PATH.findall(code):
                    if any(token.startswith(folder) for folder in generated):
                        continue
                    if not _path_exists(root, token):
                        out.append(f"{where} {token} (no such path)")
                    file, _, test = token.partition("::")
                    if test and file in test_texts and f"def {test}" not in test_texts[file]:
                        out.append(f"{where} {token} (no such test in {file})")
                for name in TEST_NAME.findall(code):
                    if not any(known.startswith(name) for known in tests):
                        out.append(f"{where} {name} (no such test)")
                for target in MAKE_TARGET.findall(code):
                    if target not in targets:
                        out.append(f"{where} make {target} (no such target)")
    return out


def test_every_named_path_test_and_make_target_exists() -> None:
    assert missing_names(DOCS) == []


def test_the_name_check_sees_a_missing_path_test_and_target(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("def test_one_thing(): ...\n", encoding="utf-8")
    (tmp_path / "jiesu").mkdir()
    (tmp_path / "jiesu" / "config.py").write_text("LIMIT = 1\n", encoding="utf-8")
    (tmp_path / "Makefile").write_text("run:\n\ttrue\n", encoding="utf-8")
    (tmp_path / ".gitignore").write_text(".venv/\nbench/results/\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "`jiesu/config.py`, `jiesu/config.LIMIT`, `bench/results/x.json`, `make run`,\n"
        "`tests/test_<file>.py`, `tests/test_a*`, `/api/v1/jiesu/nowhere`\n"
        "`tests/test_a.py::test_one_thing`, `test_one`, `pytest tests/test_a.py -k one`\n"
        "`jiesu/settings.py`, `jiesu/config.OTHER`, `make demo`,\n"
        "`tests/test_a.py::test_two`, `test_two_things`\n",
        encoding="utf-8",
    )
    assert missing_names([page], root=tmp_path) == [
        "page.md:4: jiesu/settings.py (no such path)",
        "page.md:4: jiesu/config.OTHER (no such path)",
        "page.md:4: make demo (no such target)",
        "page.md:5: tests/test_a.py::test_two (no such test in tests/test_a.py)",
        "page.md:5: test_two (no such test)",
        "page.md:5: test_two_things (no such test)",
    ]


def test_every_relative_link_resolves() -> None:
    assert broken_links(DOCS) == []


def test_the_check_sees_a_broken_file_and_a_broken_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Refused sign-ins (登录失败记录)\n\n## Same\n\n## Same\n\n"
        "[ok](#refused-sign-ins-登录失败记录) [ok](#same-1) [ok](page.md#title)\n"
        "[bad](#same-2) [bad](nowhere.md)\n```\n[fenced](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links([page], root=tmp_path) == [
        "page.md:10: #same-2 (no such heading)",
        "page.md:10: nowhere.md (no such file)",
    ]

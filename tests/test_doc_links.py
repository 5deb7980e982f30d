"""Every relative link of README.md and docs/*.md leads somewhere: the file exists and, with
a ``#fragment`` into a Markdown file, that file has a heading of that anchor (GitHub's
rule: lower case, punctuation other than ``-`` dropped, spaces to ``-``, ``-1``, ``-2`` …
for repeats)."""

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

"""The published catalogue, docs/indicators.md: the indicators, then the evaluation rules.

``python -m jiesu.stats.catalogue > docs/indicators.md``; a test keeps the file and the code
equal. (Its own module, so that neither definition module imports the other.)
"""

from __future__ import annotations

from jiesu.stats import evaluation, indicators


def document() -> str:
    """The whole of docs/indicators.md: the indicators and the evaluation rules."""
    return indicators.render_markdown() + "\n" + evaluation.render_markdown()


if __name__ == "__main__":
    print(document(), end="")

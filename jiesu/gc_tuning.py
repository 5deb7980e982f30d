"""The garbage collector of a long-running process (API, worker).

A full (generation 2) collection walks every object the process holds. Most of them are made
at start-up and live as long as the process — modules, the FastAPI app and its models, the
SDK's protobuf classes, jieba's dictionary of ~350,000 words — so each full collection took
25–330 ms of the event loop (measured in bench/action_stages.py runs, docs/performance.md),
and every request or workflow task in flight waited for it. :func:`freeze_startup_objects`
moves them out of the collector's sight (``gc.freeze``): later collections walk only what
was made since. Frozen objects are never freed, which is what start-up objects are anyway.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect what start-up left as garbage, then freeze the rest; how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()

"""How long placing a point in its grid takes (jiesu/geo.py, shapely's STRtree), for a county
of N × N square grids: build the index once, then locate random points.

    .venv/bin/python -m bench.grid_lookup [N] [POINTS]     # default 100 (10,000 grids), 10,000
"""

from __future__ import annotations

import argparse
import random
import time

from jiesu.geo import GridIndex

SIZE = 0.01  # degrees


def _square(i: int, j: int) -> dict[str, object]:
    w, s = 115.0 + i * SIZE, 37.0 + j * SIZE
    ring = [[w, s], [w + SIZE, s], [w + SIZE, s + SIZE], [w, s + SIZE], [w, s]]
    return {"type": "Polygon", "coordinates": [ring]}


def main(n: int = 100, points: int = 10_000) -> None:
    grids = [(f"G-{i:03d}-{j:03d}", _square(i, j)) for i in range(n) for j in range(n)]
    started = time.perf_counter()
    index = GridIndex(grids)
    built = time.perf_counter() - started
    rng = random.Random(311)
    queries = [(115.0 + rng.random() * n * SIZE, 37.0 + rng.random() * n * SIZE)
               for _ in range(points)]
    started = time.perf_counter()
    found = sum(index.locate(lon, lat) is not None for lon, lat in queries)
    took = time.perf_counter() - started
    print(f"{len(grids)} grids: index built in {built * 1000:.0f} ms; {points} points located "
          f"({found} inside) in {took * 1000:.0f} ms = {took / points * 1e6:.1f} µs per point")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.grid_lookup", description=__doc__)
    parser.add_argument("n", nargs="?", type=int, default=100, help="N × N grids (100)")
    parser.add_argument("points", nargs="?", type=int, default=10_000, help="points (10000)")
    args = parser.parse_args()
    main(args.n, args.points)

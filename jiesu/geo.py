"""Grid polygons (网格边界): which grid a reported point lies in.

A grid's boundary is a GeoJSON Polygon or MultiPolygon in WGS 84, stored in
``areas.boundary``. Geometry is shapely's (GEOS): validity, point-in-polygon, and an STRtree
index so a county of thousands of grids is searched without testing each one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import asyncpg
import shapely
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry

SHAPES = ("Polygon", "MultiPolygon")


def check_boundary(boundary: dict[str, Any]) -> BaseGeometry:
    """The boundary as a geometry; ValueError when it is not a valid lon/lat (Multi)Polygon."""
    if boundary.get("type") not in SHAPES:
        raise ValueError("a boundary is a GeoJSON Polygon or MultiPolygon")
    try:
        geometry = shape(boundary)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ValueError(f"not a GeoJSON geometry: {exc}") from exc
    except shapely.errors.ShapelyError as exc:
        raise ValueError(f"not a GeoJSON geometry: {exc}") from exc
    if geometry.is_empty or not geometry.is_valid:
        reason = shapely.is_valid_reason(geometry)
        raise ValueError(f"the boundary is not a valid polygon: {reason}")
    west, south, east, north = geometry.bounds
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise ValueError("the boundary is not in longitude/latitude (WGS 84)")
    return geometry


class GridIndex:
    """Grid polygons, searchable by point. A point on the edge shared by two grids belongs to
    the one with the smaller id (a fixed answer, so a retried report lands in the same grid)."""

    def __init__(self, grids: Iterable[tuple[str, dict[str, Any]]]) -> None:
        pairs = sorted((grid_id, check_boundary(b)) for grid_id, b in grids)
        self.ids = [p[0] for p in pairs]
        self.tree = shapely.STRtree([p[1] for p in pairs])

    def locate(self, lon: float, lat: float) -> str | None:
        hits = self.tree.query(Point(lon, lat), predicate="intersects")
        return self.ids[min(hits)] if len(hits) else None


async def load_grid_index(db: asyncpg.Pool | asyncpg.Connection) -> GridIndex:
    rows = await db.fetch(
        "SELECT id, boundary::text AS boundary FROM areas"
        " WHERE kind = 'grid' AND boundary IS NOT NULL"
    )
    return GridIndex((r["id"], json.loads(r["boundary"])) for r in rows)

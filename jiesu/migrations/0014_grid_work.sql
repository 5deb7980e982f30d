-- Grid work (网格): grid workers, bound to grids, report what they find on patrol (channel
-- grid, 主动发现) and solve small problems on the spot (就地解决, api/routers/grid.py).
ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check CHECK (role IN (
    'operator', 'department', 'supervisor', 'auditor', 'admin', 'grid_worker'));

ALTER TABLE staff DROP CONSTRAINT staff_role_check;
ALTER TABLE staff ADD CONSTRAINT staff_role_check CHECK (role IN (
    'operator', 'department', 'supervisor', 'auditor', 'admin', 'grid_worker'));

-- Which grids a grid worker (an API key's name or a staff login) works in.
CREATE TABLE grid_workers (
    worker  text NOT NULL,
    grid_id text NOT NULL REFERENCES areas (id),
    PRIMARY KEY (worker, grid_id)
);

-- 就地解决: solved in the grid (the measure solved_in_grid, jiesu/stats/indicators.py).
ALTER TABLE cases ADD COLUMN solved_in_grid boolean NOT NULL DEFAULT false;
ALTER TABLE case_daily_stats ADD COLUMN solved_in_grid int NOT NULL DEFAULT 0;
DELETE FROM case_stats_refresh;

-- Raising a level (提级办) climbs to a city above the county: areas and departments get the
-- level 'city' (the demo county's is 江州市, jiesu/ops/demo_data.py).
ALTER TABLE areas DROP CONSTRAINT areas_kind_check;
ALTER TABLE areas ADD CONSTRAINT areas_kind_check
    CHECK (kind IN ('city', 'county', 'township', 'community', 'grid'));
ALTER TABLE departments DROP CONSTRAINT departments_level_check;
ALTER TABLE departments ADD CONSTRAINT departments_level_check
    CHECK (level IN ('city', 'centre', 'county', 'township', 'village'));
ALTER TABLE cases DROP CONSTRAINT cases_handled_level_check;
ALTER TABLE cases ADD CONSTRAINT cases_handled_level_check
    CHECK (handled_level IN ('city', 'centre', 'county', 'township', 'village'));

-- Fair attribution (按轮次归责): one row per case × department that held it (承办记录),
-- derived from the case's events by jiesu/stats/attribution.py and written with the case row
-- (jiesu/readmodel/projection.py). Columns are named as in `cases`, so the measures of
-- jiesu/stats/indicators.py apply to a handling unchanged: department figures charge each
-- breach, return, extension and rating to the department that held the case in that round.
CREATE TABLE case_handlings (
    case_id          text NOT NULL REFERENCES cases (case_id) ON DELETE CASCADE,
    department_id    text NOT NULL,
    first_round      int NOT NULL,
    last_round       int NOT NULL,
    assigned_at      timestamptz NOT NULL,
    released_at      timestamptz,               -- the case left it; NULL: it holds it now
    accept_deadline  timestamptz,               -- of its first round (its response)
    contact_deadline timestamptz,
    finish_deadline  timestamptz,               -- in force in its last round
    accepted_at      timestamptz,
    contacted_at     timestamptz,
    replied_at       timestamptz,
    rating           text,                      -- the verdict on its reply
    resolved         boolean,                   -- NULL unless it replied and the case closed
    handled_level    text,                      -- its level, when it replied
    breaches         text[] NOT NULL DEFAULT '{}',  -- recorded while it held the case
    repeat_count     int NOT NULL DEFAULT 0,    -- repeat reports while it held the case
    return_count     int NOT NULL DEFAULT 0,    -- its returns (退单)
    extension_count  int NOT NULL DEFAULT 0,    -- its approved extensions (延期)
    replied_by       text,                      -- the person (actor name) of its last reply
    accepted_by      text,
    PRIMARY KEY (case_id, department_id)
);
CREATE INDEX case_handlings_department ON case_handlings (department_id);

-- Department grains of the rollup are now counted over handlings (jiesu/stats/rollup.py):
--   1 department (day, department_id, level)             handlings
--   3 detail     (day, all dimensions)                    handlings
--   4 department × month (0012_rollup_months.sql)        handlings, summed from grain 1
--   6 level      (day, level, category_id, channel, urgency)  handlings
-- and the grains without a department over cases:
--   0 total, 2 class (day, category_id, channel, urgency), 5 place (… and grid_id).
ALTER TABLE case_daily_stats DROP CONSTRAINT case_daily_stats_grain_check;
ALTER TABLE case_daily_stats ADD CONSTRAINT case_daily_stats_grain_check
    CHECK (grain BETWEEN 0 AND 6);
CREATE INDEX case_daily_stats_place ON case_daily_stats (grid_id, day) WHERE grain = 5;
-- Rebuild the rollup with the new grains at the next refresh.
DELETE FROM case_stats_refresh;

-- Statistics (统计分析), department evaluation (考评) and periodic reports (定期报告).
-- Definitions of every figure: jiesu/indicators.py and docs/indicators.md.

-- Lifecycle counters on the read model. The case projection fills them (see
-- activities/projection.py); until the lifecycle writes them they stay 0 / NULL.
ALTER TABLE cases
    ADD COLUMN repeat_count     int NOT NULL DEFAULT 0,   -- 重复诉求: repeat reports merged (并单)
    ADD COLUMN return_count     int NOT NULL DEFAULT 0,   -- 退单 by departments
    ADD COLUMN extension_count  int NOT NULL DEFAULT 0,   -- 延期 granted
    ADD COLUMN rehandle_count   int NOT NULL DEFAULT 0,   -- 重办 after an unsatisfied verdict
    ADD COLUMN escalation_level int NOT NULL DEFAULT 0,   -- 督办阶梯 level: 0 none … 5 问责
    ADD COLUMN handled_level    text                       -- level of the department that replied
        CHECK (handled_level IN ('centre', 'county', 'township', 'village')),
    ADD COLUMN resolved         boolean;                   -- 已解决; NULL until closed

-- Finds the cases changed since the last rollup refresh.
CREATE INDEX cases_updated ON cases (updated_at);

-- Daily rollup (日汇总) of the per-case measures, by the day a case was received (local
-- time zone), at four grains so that every filter combination reads few rows:
--   0 total      (day)
--   1 department (day, department_id, level)
--   2 class      (day, level, category_id, channel, urgency)
--   3 detail     (day, department_id, level, category_id, grid_id, channel, urgency)
-- Rows of a day are replaced as a whole by the refresh (activities/statistics.py). The measure
-- columns are exactly jiesu/indicators.py MEASURES (a test checks it).
CREATE TABLE case_daily_stats (
    grain         smallint NOT NULL CHECK (grain BETWEEN 0 AND 3),
    day           date NOT NULL,
    department_id text,
    level         text,
    category_id   text,
    grid_id       text,
    channel       text,
    urgency       text,
    received          int NOT NULL DEFAULT 0,
    closed            int NOT NULL DEFAULT 0,
    in_progress       int NOT NULL DEFAULT 0,
    overdue           int NOT NULL DEFAULT 0,
    response_due      int NOT NULL DEFAULT 0,
    responded_on_time int NOT NULL DEFAULT 0,
    finish_due        int NOT NULL DEFAULT 0,
    finished_on_time  int NOT NULL DEFAULT 0,
    rated             int NOT NULL DEFAULT 0,
    satisfied         int NOT NULL DEFAULT 0,
    resolution_judged int NOT NULL DEFAULT 0,
    resolved          int NOT NULL DEFAULT 0,
    handled           int NOT NULL DEFAULT 0,
    grassroots        int NOT NULL DEFAULT 0,
    repeated          int NOT NULL DEFAULT 0,
    extended          int NOT NULL DEFAULT 0,
    returned          int NOT NULL DEFAULT 0
);
CREATE INDEX case_daily_stats_day ON case_daily_stats (grain, day);
CREATE INDEX case_daily_stats_department ON case_daily_stats (grain, department_id, day)
    WHERE grain IN (1, 3);
CREATE INDEX case_daily_stats_grid ON case_daily_stats (grid_id, day) WHERE grain = 3;

-- Bookkeeping of the incremental refresh (one row).
CREATE TABLE case_stats_refresh (
    id                boolean PRIMARY KEY DEFAULT true CHECK (id),
    timezone          text NOT NULL,
    refreshed_at      timestamptz NOT NULL,   -- when the last refresh started
    seen_updated_at   timestamptz             -- newest cases.updated_at it saw
);

-- Department evaluation rules (考评规则); the code's defaults apply while no row exists.
CREATE TABLE evaluation_rules (
    id         text PRIMARY KEY,
    rules      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);

-- Periodic report snapshots (日报 / 周报 / 月报); re-running a period replaces its row.
CREATE TABLE report_snapshots (
    kind         text NOT NULL CHECK (kind IN ('daily', 'weekly', 'monthly')),
    period_start date NOT NULL,
    period_end   date NOT NULL,               -- last day included
    generated_at timestamptz NOT NULL,
    generation   int NOT NULL DEFAULT 1,      -- how many times this period was produced
    content      jsonb NOT NULL,
    PRIMARY KEY (kind, period_start)
);

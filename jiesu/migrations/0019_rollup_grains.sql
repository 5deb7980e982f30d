-- Statistics under change at 1,000,000 cases (issue 13, part 6): two kinds of rows the daily
-- rollup lacked, and a rollup of the per-person figures, so that no statistics request sums
-- tens of thousands of rows (or joins a year of handlings).
--
-- * Grain 7, department × level × category × channel × urgency (handlings, as grain 1): a
--   department's figures for a category, channel or urgency read it instead of the detail
--   grain 3, which has a row per grid as well (~50 rows a day for the largest bureau instead
--   of ~500), found by department and category through its index.
-- * Calendar-month rows (`day` = the month's first day) of grains 0, 1, 2 and 6 as grains 10,
--   11, 12 and 16 (grain g + 10), summed from the day rows by every refresh. A query grouped by
--   month and the ranking read the whole months from them. Grain 4 (department × month,
--   migration 0012) becomes grain 11.
-- * case_people_stats: the per-person figures (/api/v1/stats/people, jiesu/stats/people.py)
--   per local day of receipt (grain 0) and calendar month (grain 10), department and person
--   (who gave the department's last reply, or who returned; NULL: nobody replied yet).
--
-- The new rows are built by the background refresher (jiesu/stats/refresher.py): forgetting
-- the last refresh makes its next turn a full rebuild, in one transaction, off the request path.
DELETE FROM case_daily_stats WHERE grain = 4;
DROP INDEX IF EXISTS case_daily_stats_month;
ALTER TABLE case_daily_stats DROP CONSTRAINT IF EXISTS case_daily_stats_grain_check;
ALTER TABLE case_daily_stats ADD CONSTRAINT case_daily_stats_grain_check
    CHECK (grain IN (0, 1, 2, 3, 5, 6, 7, 10, 11, 12, 16));
CREATE INDEX case_daily_stats_department_class
    ON case_daily_stats (department_id, category_id, day) WHERE grain = 7;
CREATE TABLE case_people_stats (
    grain         smallint NOT NULL CHECK (grain IN (0, 10)),
    day           date NOT NULL,
    department_id text NOT NULL,
    person        text,
    cases         int NOT NULL DEFAULT 0,  -- its handlings
    handled       int NOT NULL DEFAULT 0,  -- replied to
    on_time       int NOT NULL DEFAULT 0,  -- replied within the finish deadline in force
    rated         int NOT NULL DEFAULT 0,
    satisfied     int NOT NULL DEFAULT 0,
    returns       int NOT NULL DEFAULT 0   -- 退单 made by the person for the department
);
CREATE INDEX case_people_stats_day ON case_people_stats (grain, day);
CREATE INDEX case_people_stats_department ON case_people_stats (department_id, day);
DELETE FROM case_stats_refresh;

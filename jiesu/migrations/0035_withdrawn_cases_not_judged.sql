-- A case withdrawn (撤诉) before any reply is not judged solved or not (jiesu.stats.indicators:
-- case_resolved, 应解决量), and a case closed inside its response window without a response is
-- no longer counted as a late response (应响应量). The case rows the projection wrote before
-- stored resolved = false for such a case: clear it (the trigger records each write, so the
-- next refresh recomputes their days), and rebuild the rollup, whose 应响应量 changed meaning
-- for every day (an empty case_stats_refresh makes the next refresh a full rebuild).
UPDATE cases SET resolved = NULL
WHERE status = 'closed' AND replied_at IS NULL AND resolved IS NOT NULL;
DELETE FROM case_stats_refresh;

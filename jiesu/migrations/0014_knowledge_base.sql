-- Direct answers (即时办结): the centre's knowledge base of answers, and the cases an operator
-- answered on the call from it (jiesu/intake/knowledge.py, api/routers/knowledge.py).
CREATE TABLE knowledge_answers (
    id           bigserial PRIMARY KEY,
    question     text NOT NULL,
    answer       text NOT NULL,
    category_id  text REFERENCES categories (id),  -- NULL: any category
    source       text NOT NULL,                    -- 依据: the policy, notice or office it cites
    valid_from   date NOT NULL,
    valid_until  date,                             -- NULL: until withdrawn
    withdrawn_at timestamptz,                      -- 停用: no longer offered, kept for history
    -- jieba's search-mode words of question and answer, space-separated: PostgreSQL's full text
    -- search has no Chinese parser, so the words are made in Python and matched as 'simple'.
    words        text NOT NULL,
    search       tsvector GENERATED ALWAYS AS (to_tsvector('simple', words)) STORED,
    version      int NOT NULL DEFAULT 1,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text NOT NULL,
    CHECK (valid_until IS NULL OR valid_until >= valid_from)
);
CREATE INDEX knowledge_answers_search ON knowledge_answers USING gin (search);

-- 即时办结: answered directly at intake (the measure answered_directly, jiesu/stats/indicators.py).
ALTER TABLE cases ADD COLUMN answered_directly boolean NOT NULL DEFAULT false;
ALTER TABLE case_daily_stats ADD COLUMN answered_directly int NOT NULL DEFAULT 0;
-- Rebuild the rollup with the new measure at the next refresh.
DELETE FROM case_stats_refresh;

-- Reference data, intake bookkeeping and the read model (projections of Temporal histories).

CREATE TABLE areas (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('county', 'township', 'community', 'grid')),
    parent_id   text REFERENCES areas (id)
);

CREATE TABLE departments (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    level       text NOT NULL CHECK (level IN ('centre', 'county', 'township', 'village')),
    parent_id   text REFERENCES departments (id),
    area_id     text REFERENCES areas (id)
);

CREATE TABLE categories (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    default_urgency text NOT NULL CHECK (default_urgency IN ('urgent', 'general'))
);

-- category × area → department. area_id NULL means "anywhere"; the deepest matching area
-- wins, then the highest priority.
CREATE TABLE routing_rules (
    id            serial PRIMARY KEY,
    category_id   text NOT NULL REFERENCES categories (id),
    area_id       text REFERENCES areas (id),
    department_id text NOT NULL REFERENCES departments (id),
    priority      int NOT NULL DEFAULT 0
);
CREATE INDEX routing_rules_category ON routing_rules (category_id);

-- Days that differ from the `holidays` package's China calendar.
CREATE TABLE calendar_overrides (
    day        date PRIMARY KEY,
    is_working boolean NOT NULL,
    note       text NOT NULL DEFAULT ''
);

CREATE TABLE api_keys (
    key_hash      text PRIMARY KEY,          -- sha256 of the key; the key itself is never stored
    name          text NOT NULL UNIQUE,
    role          text NOT NULL CHECK (role IN ('operator', 'department', 'supervisor', 'auditor', 'admin')),
    department_id text REFERENCES departments (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'department') = (department_id IS NOT NULL))
);

-- Case numbers: JS<yyyymmdd>-<seq>.
CREATE SEQUENCE case_number_seq;

-- One row per accepted intake, written before the workflow starts so that nothing accepted
-- is lost: a retried request finds its row and (re)starts the same workflow.
CREATE TABLE intakes (
    case_id            text PRIMARY KEY,
    idempotency_key    text UNIQUE,
    request_hash       text NOT NULL,
    citizen_token      text NOT NULL,         -- lets the citizen rate this case only
    payload            jsonb NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- Read model: one row per case, replaced by newer versions only.
CREATE TABLE cases (
    case_id          text PRIMARY KEY,
    version          int NOT NULL,
    status           text NOT NULL,
    title            text NOT NULL,
    category_id      text NOT NULL,
    grid_id          text NOT NULL,
    channel          text NOT NULL,
    urgency          text NOT NULL,
    department_id    text,
    received_at      timestamptz NOT NULL,
    accept_deadline  timestamptz,
    contact_deadline timestamptz,
    finish_deadline  timestamptz,
    accepted_at      timestamptz,
    contacted_at     timestamptz,
    replied_at       timestamptz,
    closed_at        timestamptz,
    rating           text,
    resolution       text,
    breaches         text[] NOT NULL DEFAULT '{}',
    state            jsonb NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cases_status ON cases (status, received_at DESC);
CREATE INDEX cases_department ON cases (department_id, received_at DESC);
CREATE INDEX cases_received ON cases (received_at DESC);

-- Append-only event list per case (seq is the workflow's event number).
CREATE TABLE case_events (
    case_id  text NOT NULL,
    seq      int NOT NULL,
    kind     text NOT NULL,
    at       timestamptz NOT NULL,
    actor    jsonb NOT NULL,
    data     jsonb NOT NULL,
    PRIMARY KEY (case_id, seq)
);

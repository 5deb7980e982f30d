-- Administration (issue 12, parts 4 and 5): the change log, the routing catalogue's effective
-- dates, grid polygons for Open311, run-time policy values, notification templates and the
-- Open311 requests' locations.

-- Every administrative change: who, when, what, before and after. Append-only: the trigger
-- refuses UPDATE and DELETE (TRUNCATE too), so the log cannot be edited through the app.
CREATE TABLE admin_changes (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     jsonb NOT NULL,          -- {"role", "name", "department_id"}: an API key or the CLI
    entity    text NOT NULL,           -- department, area, category, routing_rule, calendar, ...
    entity_id text NOT NULL,
    action    text NOT NULL CHECK (action IN ('create', 'update', 'delete', 'retire')),
    before    jsonb,                   -- NULL for a create
    after     jsonb                    -- NULL for a delete
);
CREATE INDEX admin_changes_entity ON admin_changes (entity, entity_id, id);

CREATE FUNCTION admin_changes_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'admin_changes is append-only';
END $$;
CREATE TRIGGER admin_changes_no_update BEFORE UPDATE OR DELETE ON admin_changes
    FOR EACH ROW EXECUTE FUNCTION admin_changes_append_only();
CREATE TRIGGER admin_changes_no_truncate BEFORE TRUNCATE ON admin_changes
    FOR EACH STATEMENT EXECUTE FUNCTION admin_changes_append_only();

-- The routing catalogue (派单目录): a rule is in force from valid_from (inclusive) to valid_to
-- (exclusive, NULL = open-ended). Routing uses the rules in force when the case was reported.
-- A rule is never edited in place: it is retired (valid_to set) and a new one written.
ALTER TABLE routing_rules ADD COLUMN valid_from timestamptz NOT NULL DEFAULT '-infinity';
ALTER TABLE routing_rules ADD COLUMN valid_to timestamptz;
ALTER TABLE routing_rules ADD CONSTRAINT routing_rules_valid_range
    CHECK (valid_to IS NULL OR valid_to > valid_from);

-- A grid's boundary, a GeoJSON Polygon or MultiPolygon in WGS 84 (longitude, latitude):
-- Open311 places a reported point in its grid (jiesu/geo.py, shapely).
ALTER TABLE areas ADD COLUMN boundary jsonb;

-- A category's description for Open311's service list.
ALTER TABLE categories ADD COLUMN description text NOT NULL DEFAULT '';

-- Run-time policy values (jiesu/admin/policy.py says which names may be set). A row overrides
-- the environment's default for deadlines computed from then on; each case records the
-- values it was given in its history (activities/deadlines.py).
CREATE TABLE policy_values (
    name       text PRIMARY KEY,
    value      double precision NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Notification templates: a row replaces the built-in subject/body of one kind of notice
-- (an event kind × a kind of recipient), with the built-in text available as a field.
CREATE TABLE notification_templates (
    event_kind     text NOT NULL,
    recipient_kind text NOT NULL CHECK (recipient_kind IN ('department', 'citizen', 'supervisor')),
    subject        text NOT NULL,
    body           text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_kind, recipient_kind)
);

-- Open311 (GeoReport v2) requests: the point or address they were reported at, keyed by the
-- case number they were filed as (a repeat report carries its own report id).
CREATE TABLE open311_requests (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id      text NOT NULL,
    service_code text NOT NULL,
    lat          double precision,
    long         double precision,
    address      text NOT NULL DEFAULT '',
    media_url    text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX open311_requests_case ON open311_requests (case_id);

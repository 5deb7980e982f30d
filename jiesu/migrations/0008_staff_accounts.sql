-- Staff accounts (issue 11): people, not shared department keys. A person logs in with a
-- password (argon2, jiesu/access/staff.py) and works in a server-side session
-- (jiesu/access/sessions.py); every change to an account is recorded, and so is every staff
-- view of a case's unmasked personal data (jiesu/access/content.py).

CREATE TABLE staff (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    login         text NOT NULL UNIQUE,
    display_name  text NOT NULL,
    role          text NOT NULL
                  CHECK (role IN ('operator', 'department', 'supervisor', 'auditor', 'admin')),
    department_id text REFERENCES departments (id),
    password_hash text NOT NULL,              -- argon2id, with its parameters and salt
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'department') = (department_id IS NOT NULL))
);

-- Who changed an account, when, and what it was before and after (never a password hash).
CREATE TABLE staff_changes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    staff_id   bigint NOT NULL REFERENCES staff (id),
    change     text NOT NULL,                 -- created, updated, disabled, enabled, password_set
    changed_by text NOT NULL,                 -- person:<login>, key:<name>, cli:<os user>, demo-data
    changed_at timestamptz NOT NULL DEFAULT now(),
    before     jsonb,
    after      jsonb
);
CREATE INDEX staff_changes_staff ON staff_changes (staff_id, id);

-- Server-side sessions: the cookie carries a random token, the table only its SHA-256.
CREATE TABLE staff_sessions (
    token_hash   text PRIMARY KEY,
    staff_id     bigint NOT NULL REFERENCES staff (id),
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    idle_timeout interval NOT NULL,           -- ends when unused this long
    expires_at   timestamptz NOT NULL,        -- ends at this moment whatever the use
    ended_at     timestamptz,
    ended_why    text                         -- logout, disabled, password_set
);
CREATE INDEX staff_sessions_open ON staff_sessions (staff_id) WHERE ended_at IS NULL;

-- Every staff view of a case's unmasked personal data (who, when, which case, what fields).
CREATE TABLE content_views (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id       text NOT NULL,
    viewed_at     timestamptz NOT NULL DEFAULT now(),
    viewer        text NOT NULL,              -- the person's login or the API key's name
    viewer_role   text NOT NULL,
    department_id text,
    person        boolean NOT NULL,           -- a person in a session, not an API key
    fields        text[] NOT NULL
);
CREATE INDEX content_views_case ON content_views (case_id, viewed_at);

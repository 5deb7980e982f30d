-- Channels (docs/channels.md): the SMS gateway's log, inbound SMS and e-mail deliveries,
-- one-time codes of the self-service intake, enterprise categories, stored attachments.

-- 企业专席: categories an enterprise (with its unified social credit code) files under.
ALTER TABLE categories ADD COLUMN enterprise boolean NOT NULL DEFAULT false;

-- The log SMS gateway (jiesu/notify/sms.py LogSmsGateway): what would have been sent. The key
-- is the sender's idempotency key (a notice's key, an OTP's id), so a re-send is one row.
CREATE TABLE sms_log (
    id      bigserial PRIMARY KEY,
    key     text NOT NULL UNIQUE,
    phone   text NOT NULL,
    text    text NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT now()
);

-- Inbound SMS, one row per gateway message id: the decision taken on its first delivery
-- (a new case, or a rating of the case waiting for that phone's rating), so a redelivery
-- repeats the same decision (and the same idempotent action) instead of taking another.
CREATE TABLE sms_inbound (
    message_id  text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('case', 'rating')),
    case_id     text,            -- the rated case (kind 'rating')
    rating      text,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- One-time codes (验证码) of the citizen self-service intake. The phone is kept only as a
-- keyed hash, the code only as a keyed hash of (phone key, code). A code files one report:
-- the report's idempotency key is derived from the code's id.
CREATE TABLE otp_codes (
    id          bigserial PRIMARY KEY,
    phone_key   text NOT NULL,
    code_hash   text NOT NULL,
    expires_at  timestamptz NOT NULL,
    attempts    int NOT NULL DEFAULT 0,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX otp_codes_phone ON otp_codes (phone_key, id DESC);

-- Inbound e-mail, one row per Message-ID (hashed), written once its case is filed: the same
-- mail delivered twice makes one case (the filing's Idempotency-Key) and one automatic reply.
CREATE TABLE inbound_mail (
    message_key text PRIMARY KEY,   -- sha256 of the Message-ID (of the whole mail without one)
    case_id     text NOT NULL,
    replied_at  timestamptz,        -- the automatic reply went out
    received_at timestamptz NOT NULL DEFAULT now()
);

-- The log mailer (jiesu/notify/mail.py LogMailer): the automatic replies that would have been
-- sent, one row per key.
CREATE TABLE mail_log (
    id          bigserial PRIMARY KEY,
    key         text NOT NULL UNIQUE,
    to_address  text NOT NULL,
    subject     text NOT NULL,
    body        text NOT NULL,
    in_reply_to text,
    sent_at     timestamptz NOT NULL DEFAULT now()
);

-- Files that came with a report (an e-mail's attachments), linked to its case as evidence.
CREATE TABLE attachments (
    id           bigserial PRIMARY KEY,
    case_id      text NOT NULL,
    source       text NOT NULL,     -- e.g. 'email:<message key>'
    filename     text NOT NULL,
    content_type text NOT NULL,
    size         int NOT NULL,
    sha256       text NOT NULL,
    content      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, filename, sha256)
);
CREATE INDEX attachments_case ON attachments (case_id, id);

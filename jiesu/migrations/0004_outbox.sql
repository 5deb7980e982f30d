-- Notifications outbox (通知发件箱): written by the projection activity in the same transaction
-- as the case events, delivered at least once by jiesu.outbox.OutboxDispatcher.
--
-- status: pending → sending (claimed, lease_until set) → sent
--                           ↘ pending again after a failed attempt (not before not_before)
--                           ↘ failed after max_attempts
-- A 'sending' row whose lease expired (its dispatcher died) is claimed again.

CREATE TABLE notifications (
    id             bigserial PRIMARY KEY,
    key            text NOT NULL UNIQUE,        -- <case>:<event seq>:<recipient kind>:<recipient>
    case_id        text NOT NULL,
    event_seq      int NOT NULL,
    event_kind     text NOT NULL,
    recipient_kind text NOT NULL CHECK (recipient_kind IN ('department', 'citizen', 'supervisor')),
    recipient_id   text NOT NULL,               -- department id, case id (citizen), 'supervisors'
    channel        text NOT NULL,               -- 'email', 'sms'
    subject        text NOT NULL,
    body           text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts       int NOT NULL DEFAULT 0,
    not_before     timestamptz NOT NULL DEFAULT now(),  -- retry back-off for pending rows
    lease_until    timestamptz,                          -- for sending rows
    sent_at        timestamptz,
    last_error     text
);

-- The dispatcher's scan: only undelivered rows, oldest first.
CREATE INDEX notifications_due ON notifications (id) WHERE status IN ('pending', 'sending');
CREATE INDEX notifications_case ON notifications (case_id, id);

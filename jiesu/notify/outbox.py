"""Delivering the notifications outbox (通知发件箱): at least once, never twice at the same time.

The projection activity writes notices (``jiesu.notify.notices``) into ``notifications`` in the same
transaction as the case events. ``OutboxDispatcher`` delivers them through a pluggable
``Sender``:

1. **claim** a batch: ``pending`` rows that are due, plus ``sending`` rows whose lease expired
   (their dispatcher died), move to ``sending`` with a lease and ``attempts + 1``, in one
   ``UPDATE … FOR UPDATE SKIP LOCKED`` statement. Two dispatchers (threads, processes,
   machines) never claim the same row while its lease runs.
2. **send** each claimed notice, one after the other, in ``id`` order. The dispatcher
   **renews** the lease of the notice in flight only (a heartbeat every third of the lease), so
   a live dispatcher keeps the notice it is sending however long that takes, and a dead one
   loses it within one lease (30 s by default). The notices still waiting in the batch keep the
   claim's lease alone: should the sends before them take longer, another dispatcher takes them
   over, and this one skips them (fenced by ``attempts``) or renews their lease before it sends
   them. Each send is bounded by ``send_timeout`` and by what is left of the last renewed
   lease; a notice whose lease could not be renewed in time (the database was away) is handed
   back unsent. After a send **timed out**, the rest of the batch on the same channel is handed
   back at once (another dispatcher, or the next claim, takes it) and the other channels go on:
   a hanging mail server holds up one notice per claim, not the SMS claimed behind its mails.
3. **mark** it ``sent`` (with the channel it went by: a citizen's SMS ``route`` sent by e-mail
   is recorded as ``email``); or ``skipped`` when it is a citizen's SMS to a number that receives
   none (a landline or a short number: jiesu.notify.sms.is_mobile) and the citizen left no
   e-mail address (with one, the notice goes there instead: ``route``), with why in
   ``last_error`` and nothing sent; or back to ``pending`` with ``last_error`` and an
   exponential back-off; or ``failed`` after ``max_attempts``. Each mark is fenced by the
   ``attempts`` number of the claim, so a dispatcher whose lease was taken over cannot
   overwrite the newer claim.

Guarantees, honestly:

- **At least once.** A notice stays in the outbox until a sender returned for it.
- **No concurrent duplicates.** While a dispatcher holds the lease nobody else sends it.
- **Duplicates are still possible** when a dispatcher dies (or hangs past its lease) after the
  sender delivered but before ``sent`` was committed: the notice is sent again after the lease
  expires. The same holds when a send times out after the remote side already accepted it.
  Receivers that can deduplicate get the stable ``key`` (JSON line field, ``Message-ID`` and
  ``X-Jiesu-Notice`` header of an email).

Senders: ``LogSender`` (one JSON line per notice in a file — the default for e-mail),
``SmtpSender`` (email, stdlib ``smtplib`` in a thread) and ``SmsSender`` (citizens' SMS through
the SMS gateway, ``jiesu.notify.sms``). ``sender_from_env()`` picks them from
``JIESU_NOTIFY_*`` / ``JIESU_SMTP_*`` variables and the gateway it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import smtplib
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Protocol

import asyncpg

from jiesu.case.domain import MAILBOX_CHARS
from jiesu.notify.notices import Notice
from jiesu.notify.sms import OutboundSms, SmsGateway, is_mobile, not_sent_because

log = logging.getLogger(__name__)


class OutboundNotice(Notice):
    """A claimed notice with its resolved address, as a sender gets it."""

    id: int
    attempts: int
    address: str | None  # citizen: phone; department: its id; supervisors: "supervisors"
    recipient_name: str | None = None  # department name when known


class Sender(Protocol):
    async def send(self, notice: OutboundNotice) -> None:
        """Deliver ``notice`` or raise. Returning means delivered."""


class Renderer(Protocol):
    async def __call__(self, notice: OutboundNotice) -> OutboundNotice:
        """The notice as it is sent: what may not rest in the outbox filled in at the last
        moment (the citizen's link, jiesu.intake.follow_up). Raising is a failed attempt."""


# --- senders --------------------------------------------------------------------------------


class LogSender:
    """Appends one JSON line per notice to ``path`` (created with its folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    async def send(self, notice: OutboundNotice) -> None:
        line = json.dumps(notice.model_dump(mode="json"), ensure_ascii=False) + "\n"
        async with self._lock:
            await asyncio.to_thread(self._append, line)

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)


# One mailbox, as a To header takes it without splitting it: no header specials, no blanks.
# Intake refuses anything else as new input (jiesu.case.domain.ONE_MAILBOX, the same
# characters), but an intake stored before holds what it took ("wang,li@163.com", a slip for a
# full stop): refused here, where it would become two recipients. Without intake's dot: a
# department's mailbox may be a local one.
_ONE_ADDRESS = re.compile(f"{MAILBOX_CHARS}+@{MAILBOX_CHARS}+")


class SmtpSender:
    """Email through an SMTP server (stdlib ``smtplib``, one connection per message, in a
    thread).

    The recipient is the notice's address when it is an email address, otherwise
    ``<address>@<recipient_domain>`` (department mailboxes named by department id, e.g.
    ``water@notify.example.gov.cn``, and ``supervisors@…``).
    """

    def __init__(
        self,
        host: str,
        port: int,
        sender_address: str,
        *,
        recipient_domain: str | None = None,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.sender_address = sender_address
        self.recipient_domain = recipient_domain
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout

    def recipient(self, notice: OutboundNotice) -> str:
        address = notice.address or ""
        if address and "@" not in address and self.recipient_domain:
            address = f"{address}@{self.recipient_domain}"
        if "@" not in address:
            raise ValueError(
                f"no email address for {notice.recipient_kind} {notice.recipient_id}"
            )
        if not _ONE_ADDRESS.fullmatch(address):
            # a comma or a semicolon makes the To header a list, and smtplib sends to each
            # ("wang,li@163.com": to "wang" and "li@163.com"); a notice goes to one mailbox
            raise ValueError(
                f"not one e-mail address for {notice.recipient_kind} {notice.recipient_id}"
            )
        return address

    def message(self, notice: OutboundNotice) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender_address
        msg["To"] = self.recipient(notice)
        msg["Subject"] = notice.subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        digest = hashlib.sha256(notice.key.encode()).hexdigest()[:32]
        domain = self.sender_address.rpartition("@")[2] or "jiesu"
        msg["Message-ID"] = f"<{digest}@{domain}>"  # the same for every re-delivery
        msg["X-Jiesu-Notice"] = notice.key
        # RFC 3834: no automatic answer to it — and our own complaints listener drops it, should
        # a notice ever be addressed there (a case filed From: the complaints address).
        msg["Auto-Submitted"] = "auto-generated"
        greeting = f"{notice.recipient_name}：\n\n" if notice.recipient_name else ""
        msg.set_content(greeting + notice.body)
        return msg

    async def send(self, notice: OutboundNotice) -> None:
        await asyncio.to_thread(self._send, self.message(notice))

    def _send(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(msg)


class SmsSender:
    """Citizens' notices as text messages through the SMS gateway. The notice's key is the
    message's idempotency key, so a re-delivered notice is one message at the gateway."""

    def __init__(self, gateway: SmsGateway) -> None:
        self.gateway = gateway

    async def send(self, notice: OutboundNotice) -> None:
        if not notice.address:
            raise ValueError(f"no phone number for {notice.recipient_kind} {notice.recipient_id}")
        await self.gateway.send(OutboundSms(key=notice.key, phone=notice.address, text=notice.body))


class ChannelSender:
    """Sends each notice with the sender for its channel, else with ``default``."""

    def __init__(self, by_channel: Mapping[str, Sender], default: Sender) -> None:
        self.by_channel = dict(by_channel)
        self.default = default

    async def send(self, notice: OutboundNotice) -> None:
        await self.by_channel.get(notice.channel, self.default).send(notice)


def sender_from_env(
    env: Mapping[str, str] | None = None, sms: SmsGateway | None = None
) -> Sender:
    """The sender the environment asks for; with ``sms``, citizens' SMS go through that
    gateway (the worker passes the one JIESU_SMS_GATEWAY names).

    - ``JIESU_NOTIFY_SENDER``: ``log`` (default) or ``smtp``;
    - ``JIESU_NOTIFY_LOG``: the log sender's file (default ``.data/notifications.log``); with
      ``smtp`` the non-email notices (SMS) still go there;
    - ``JIESU_SMTP_HOST``, ``JIESU_SMTP_PORT`` (25), ``JIESU_SMTP_FROM``,
      ``JIESU_SMTP_RECIPIENT_DOMAIN``, ``JIESU_SMTP_USER``, ``JIESU_SMTP_PASSWORD``,
      ``JIESU_SMTP_STARTTLS`` (``1``/``true``).
    """
    env = os.environ if env is None else env
    log_sender = LogSender(Path(env.get("JIESU_NOTIFY_LOG") or ".data/notifications.log"))
    kind = (env.get("JIESU_NOTIFY_SENDER") or "log").strip().lower()
    by_channel: dict[str, Sender] = {"sms": SmsSender(sms)} if sms is not None else {}
    if kind == "log":
        return ChannelSender(by_channel, default=log_sender) if by_channel else log_sender
    if kind != "smtp":
        raise ValueError(f"JIESU_NOTIFY_SENDER must be 'log' or 'smtp', not {kind!r}")
    host, sender_address = env.get("JIESU_SMTP_HOST"), env.get("JIESU_SMTP_FROM")
    if not host or not sender_address:
        raise ValueError("JIESU_NOTIFY_SENDER=smtp needs JIESU_SMTP_HOST and JIESU_SMTP_FROM")
    smtp = SmtpSender(
        host,
        int(env.get("JIESU_SMTP_PORT") or 25),
        sender_address,
        recipient_domain=env.get("JIESU_SMTP_RECIPIENT_DOMAIN") or None,
        username=env.get("JIESU_SMTP_USER") or None,
        password=env.get("JIESU_SMTP_PASSWORD") or None,
        starttls=(env.get("JIESU_SMTP_STARTTLS") or "").lower() in {"1", "true", "yes"},
    )
    return ChannelSender({**by_channel, "email": smtp}, default=log_sender)


# --- the dispatcher -------------------------------------------------------------------------

# The citizen of a notice ``n`` to a citizen: the case's own (recipient_id is the case number)
# or a repeat report's (<case>/repeat-<id>, jiesu.intake.follow_up.recipient). The doctor reads
# it too (jiesu.health.checks, citizen_not_told: only a citizen with a phone can be phoned).
NOTICE_CITIZEN = """coalesce(
    (SELECT i.payload -> 'intake' -> 'citizen' FROM intakes i WHERE i.case_id = n.recipient_id),
    (SELECT r.payload -> 'intake' -> 'citizen' FROM repeat_reports r
     WHERE r.id = substring(n.recipient_id FROM '/repeat-([0-9]+)$')::bigint))"""

# The channel and address of a citizen's notice are chosen in Python (route): whether a phone
# takes an SMS is jiesu.notify.sms.is_mobile's to say, one rule for the whole platform.
_CLAIM = f"""
UPDATE notifications n
SET status = 'sending', lease_until = now() + $2::interval, attempts = n.attempts + 1
WHERE n.id IN (
    SELECT id FROM notifications
    WHERE ((status = 'pending' AND not_before <= now())
           OR (status = 'sending' AND lease_until < now()))
      AND attempts < $3
    ORDER BY id
    FOR UPDATE SKIP LOCKED
    LIMIT $1)
RETURNING
    n.id, n.key, n.case_id, n.event_seq, n.event_kind, n.recipient_kind, n.recipient_id,
    n.channel, n.subject, n.body, n.attempts,
    CASE WHEN n.recipient_kind <> 'citizen' THEN n.recipient_id END AS address,
    CASE WHEN n.recipient_kind = 'citizen' THEN {NOTICE_CITIZEN} ->> 'phone' END AS citizen_phone,
    CASE WHEN n.recipient_kind = 'citizen' THEN {NOTICE_CITIZEN} ->> 'email' END AS citizen_email,
    (SELECT d.name FROM departments d
     WHERE n.recipient_kind = 'department' AND d.id = n.recipient_id) AS recipient_name
"""


def route(row: Mapping[str, object]) -> dict[str, object]:
    """A claimed row as it is sent: a citizen's SMS goes to the phone when it takes one, else
    by e-mail when the citizen left an address (a report by e-mail, or a landline or short
    number with an e-mail beside it), else to the phone, where the dispatcher skips it
    (unreachable). Before, only a citizen without any phone was written to, so a landline
    with an e-mail got nothing. Every attempt of a notice routes the same way: a re-delivery
    is the same e-mail (its key, its Message-ID)."""
    notice = dict(row)
    phone, email = notice.pop("citizen_phone", None), notice.pop("citizen_email", None)
    if notice["recipient_kind"] != "citizen":
        return notice
    by_email = notice["channel"] == "email" or not (phone and is_mobile(str(phone)))
    if by_email and email:
        return notice | {"channel": "email", "address": email}
    return notice | {"address": phone or email}


# Rows whose last allowed attempt died with its dispatcher: give up on them visibly.
_EXPIRE = """
UPDATE notifications
SET status = 'failed', lease_until = NULL,
    last_error = coalesce(last_error || '; ', '') || 'lease expired on the last attempt'
WHERE status = 'sending' AND lease_until < now() AND attempts >= $1
"""

# The by-id statements (the marks, the heartbeat, the hand-back) find each notice by its
# primary key alone, and then check the claim's fence on that one row: ``status IS NOT DISTINCT
# FROM 'sending'`` (status is NOT NULL: the same as ``=``). Written ``status = 'sending'``, the
# fence was also a search condition the planner could read through a partial index whose
# predicate it implies, and which one it chose moved with the statistics: 0004's
# notifications_due or 0042's notifications_unsent — after a vacuum of a quiet outbox both
# look empty, so the heartbeat and the hand-back read the whole of notifications_due (every
# pending notice: a median of 450–630 buffers each, up to 2,000, with a backlog of 10,000 on
# 2,000,000 notices, against 5) and the marks every 'sending' entry of notifications_unsent
# (a few buffers, growing with the notices in flight). No partial index's predicate is proven
# from IS NOT DISTINCT FROM, nor is it an index condition: one row by the primary key, whatever
# the statistics (bench/outbox_mark_plan.py; docs/performance.md, "The dispatcher's by-id
# statements"; tests/test_metrics.py::test_the_outbox_finds_a_notice_it_holds_by_its_primary_key).
_CLAIMED = "status IS NOT DISTINCT FROM 'sending'"

# Each attempt's mark records the channel it was sent by ($3 / $6): a citizen's SMS that
# route sent by e-mail is an e-mail in the outbox from then on (and routes as one again).
_SENT = f"""
UPDATE notifications
SET status = 'sent', sent_at = now(), lease_until = NULL, last_error = NULL, channel = $3
WHERE id = $1 AND {_CLAIMED} AND attempts = $2
"""

_FAILED_ATTEMPT = f"""
UPDATE notifications
SET status = CASE WHEN attempts >= $3 THEN 'failed' ELSE 'pending' END,
    last_error = $4, lease_until = NULL, not_before = now() + $5::interval, channel = $6
WHERE id = $1 AND {_CLAIMED} AND attempts = $2
"""

# A citizen's SMS to a number that receives none (a landline, a short number): not sent, and
# kept with why, so whoever reads the case's notices learns that no SMS went and why.
_SKIPPED = f"""
UPDATE notifications SET status = 'skipped', lease_until = NULL, last_error = $3
WHERE id = $1 AND {_CLAIMED} AND attempts = $2
"""

# The heartbeat: push the lease of the rows this claim still holds; returns the ids still held
# (a row is gone from the answer once it was marked, or taken over by a newer claim).
_RENEW = f"""
UPDATE notifications n SET lease_until = now() + $3::interval
FROM unnest($1::bigint[], $2::int[]) AS held(id, attempts)
WHERE n.id = held.id AND n.attempts = held.attempts AND n.{_CLAIMED}
RETURNING n.id
"""

_HAND_BACK = f"""
UPDATE notifications n SET status = 'pending', lease_until = NULL, attempts = n.attempts - 1
FROM unnest($1::bigint[], $2::int[]) AS held(id, attempts)
WHERE n.id = held.id AND n.{_CLAIMED} AND n.attempts = held.attempts
"""


# How long a claim holds a notice without a heartbeat: a crashed dispatcher's notices are
# claimed again by another one within this (plus its poll interval). Urgent cases have 30
# minutes to be accepted, so minutes of silence after a worker crash are not acceptable.
DEFAULT_LEASE = timedelta(seconds=30)
# Our clocks are not the database's: count a lease as over a little before it really is.
_LEASE_SAFETY = 0.9


class _LeaseKeeper:
    """Keeps the lease of the one notice of a claimed batch that is being sent.

    Only the notice in flight is renewed (in the background): the others wait under the
    claim's lease alone, so a batch held up by a slow channel is not kept from other
    dispatchers for longer than one lease."""

    def __init__(self, pool: asyncpg.Pool, lease: timedelta) -> None:
        self.pool = pool
        self.lease = lease
        self.held: dict[int, int] = {}  # the notice in flight: id → attempts of our claim
        loop = asyncio.get_running_loop()
        # Started after the claim returned: the database's lease ends later than ours.
        self._claimed_until = loop.time() + lease.total_seconds() * _LEASE_SAFETY
        self._held_until = self._claimed_until
        self._task: asyncio.Task[None] | None = None
        self._send: tuple[asyncio.Timeout, float] | None = None  # the running send's bound

    def remaining(self) -> float:
        """Seconds our claim of the notice in flight is known to last from now."""
        return self._held_until - asyncio.get_running_loop().time()

    async def take(self, row: Mapping[str, object]) -> bool:
        """Make ``row`` the notice in flight; False when it was taken over meanwhile (its
        claim's lease ran out while the notices before it were sent). Its lease is renewed
        now unless the claim's own lasts until the next heartbeat renews it."""
        loop = asyncio.get_running_loop()
        self.held = {row["id"]: row["attempts"]}
        if self._claimed_until - loop.time() > self.lease.total_seconds() / 3:
            self._held_until = self._claimed_until
            return True
        self._held_until = loop.time()  # known to last no longer until renewed
        await self.renew()
        return row["id"] in self.held

    def release(self, row: Mapping[str, object]) -> None:
        """The notice was marked (sent, failed, handed back): stop renewing it."""
        self.held.pop(row["id"], None)

    async def renew(self) -> None:
        """One heartbeat: push the lease of the notice in flight."""
        if not self.held:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        held = dict(self.held)
        ids = list(held)
        still = {
            r["id"]
            for r in await self.pool.fetch(_RENEW, ids, [held[i] for i in ids], self.lease)
        }
        if self.held != held:  # the notice in flight changed meanwhile: not what we renewed
            return
        for lost in set(ids) - still:  # marked meanwhile, or taken over by a newer claim
            self.held.pop(lost, None)
        self._held_until = started + self.lease.total_seconds() * _LEASE_SAFETY
        if self._send is not None:
            timeout, send_deadline = self._send
            # (a bound that is expiring right now cannot move: that send is over anyway)
            with contextlib.suppress(RuntimeError):
                timeout.reschedule(min(send_deadline, self._held_until))

    @contextlib.asynccontextmanager
    async def bounded(self, seconds: float) -> AsyncIterator[None]:
        """A send may take ``seconds``, but never past our claim: the bound moves with each
        renewal (a send is cut when the lease could not be renewed in time)."""
        send_deadline = asyncio.get_running_loop().time() + seconds
        async with asyncio.timeout_at(min(send_deadline, self._held_until)) as timeout:
            self._send = (timeout, send_deadline)
            try:
                yield
            finally:
                self._send = None

    async def _beat(self) -> None:
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew()
            except Exception:  # the database is away: our claim runs out, sends stop in time
                log.warning("outbox: could not renew the lease of notice %s", list(self.held),
                            exc_info=True)

    async def __aenter__(self) -> _LeaseKeeper:
        if self.lease > timedelta(0):
            self._task = asyncio.create_task(self._beat())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def unreachable(notice: OutboundNotice) -> bool:
    """A citizen's SMS to a number that cannot receive one: a landline or a short number left
    at intake with no e-mail beside it (``route`` sent it to the e-mail otherwise; the intake
    SMS of such a number is written ``skipped`` already, jiesu.intake.follow_up; this is for
    the case's later SMS, the reply's among them) — or to no number at all (an app's report
    without contact). Its mark says which (jiesu.notify.sms.not_sent_because)."""
    return (notice.recipient_kind == "citizen" and notice.channel == "sms"
            and not is_mobile(notice.address or ""))


class OutboxDispatcher:
    """Delivers pending notices with ``sender``; run any number of them side by side."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        sender: Sender,
        *,
        batch: int = 50,
        lease: timedelta = DEFAULT_LEASE,
        send_timeout: timedelta = timedelta(seconds=60),
        max_attempts: int = 10,
        retry_delay: timedelta = timedelta(seconds=10),
        max_retry_delay: timedelta = timedelta(minutes=30),
        render: Renderer | None = None,
    ) -> None:
        self.pool = pool
        self.render = render
        self.sender = sender
        self.batch = batch
        self.lease = lease
        self.send_timeout = send_timeout
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay

    async def run_once(self) -> int:
        """Claim one batch and try to deliver it; return how many notices were claimed."""
        await self.pool.execute(_EXPIRE, self.max_attempts)
        rows = await self.pool.fetch(_CLAIM, self.batch, self.lease, self.max_attempts)
        if not rows:
            return 0
        # RETURNING has no order: send in the order the claim chose (oldest first)
        batch = sorted((route(row) for row in rows), key=lambda row: row["id"])
        stalled: set[str] = set()  # channels whose send timed out in this batch
        async with _LeaseKeeper(self.pool, self.lease) as lease:
            for i, row in enumerate(batch):
                if row["channel"] in stalled:
                    continue  # handed back already
                if not await lease.take(row):
                    continue  # its lease ran out while it waited: another dispatcher has it
                if lease.remaining() <= 0:
                    await self._hand_back([row])
                elif not await self._deliver(row, lease):
                    # A send that timed out: its channel hangs. Hand the rest of the batch on
                    # that channel back, not to hold it behind one timeout after another.
                    stalled.add(row["channel"])
                    await self._hand_back(
                        [r for r in batch[i + 1:] if r["channel"] == row["channel"]]
                    )
                lease.release(row)
        return len(rows)

    async def _hand_back(self, rows: list[Mapping[str, object]]) -> None:
        """Unsent and not counted as an attempt: any dispatcher may claim them at once."""
        if rows:
            await self.pool.execute(
                _HAND_BACK, [r["id"] for r in rows], [r["attempts"] for r in rows]
            )

    async def _deliver(self, row: Mapping[str, object], lease: _LeaseKeeper) -> bool:
        """Send one notice and mark it; False when its send timed out."""
        notice_id, attempts, key = row["id"], row["attempts"], row["key"]
        try:
            notice = OutboundNotice.model_validate(dict(row))
            if self.render is not None:
                notice = await self.render(notice)
            if unreachable(notice):
                await self.pool.execute(
                    _SKIPPED, notice_id, attempts, not_sent_because(notice.address)
                )
                return True
            async with lease.bounded(self.send_timeout.total_seconds()):
                await self.sender.send(notice)
        except Exception as error:  # any failure is a failed attempt, never a dead dispatcher
            message = f"{type(error).__name__}: {error}"[:2000]
            log.warning("notice %s attempt %d failed: %s", key, attempts, message)
            await self.pool.execute(
                _FAILED_ATTEMPT, notice_id, attempts, self.max_attempts, message,
                self._backoff(attempts), row["channel"],
            )
            return not isinstance(error, TimeoutError)
        marked = await self.pool.execute(_SENT, notice_id, attempts, row["channel"])
        if marked != "UPDATE 1":
            log.warning("notice %s was sent after its lease was taken over", key)
        return True

    def _backoff(self, attempts: int) -> timedelta:
        return min(self.retry_delay * 2 ** max(attempts - 1, 0), self.max_retry_delay)

    async def run(self, stop: asyncio.Event, poll_interval: float = 1.0) -> None:
        """Deliver until ``stop`` is set: a full batch is followed at once by the next one,
        otherwise wait ``poll_interval``. Errors are logged and retried."""
        log.info("outbox dispatcher started (%s)", type(self.sender).__name__)
        while not stop.is_set():
            try:
                claimed = await self.run_once()
            except Exception:  # the database is away, say: keep polling
                log.exception("outbox dispatcher: run failed, retrying")
                claimed = 0
            if claimed < self.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_interval)
        log.info("outbox dispatcher stopped")

"""Runtime configuration, read from environment variables (the same ones for the embedded
stack, docker-compose and a real cluster)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# host:port with a port, e.g. 127.0.0.1:9464 or 0.0.0.0:9464; empty allowed.
ADDRESS_PATTERN = r"^$|^[A-Za-z0-9._\-]+:[0-9]{1,5}$"


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` → (host, port)."""
    host, _, port = address.rpartition(":")
    return host, int(port)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    temporal_address: str = Field(default="localhost:7233", alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", alias="TEMPORAL_NAMESPACE")
    # How long a starting worker waits for Temporal (a cluster restarting, started after it)
    # before it gives up with one line, exit 1
    temporal_connect_seconds: float = Field(
        default=60.0, ge=0, alias="JIESU_TEMPORAL_CONNECT_SECONDS"
    )
    task_queue: str = Field(default="jiesu-cases", alias="JIESU_TASK_QUEUE")
    database_url: str = Field(
        default="postgresql://postgres@localhost:5432/jiesu", alias="DATABASE_URL"
    )
    timezone: str = Field(default="Asia/Shanghai", alias="JIESU_TIMEZONE")
    # Lifecycle policy (recorded into each case's history when its deadlines are set).
    rating_window_hours: float = Field(default=72.0, gt=0, alias="JIESU_RATING_WINDOW_HOURS")
    return_window_hours: float = Field(default=24.0, gt=0, alias="JIESU_RETURN_WINDOW_HOURS")
    dispatcher_window_minutes: float = Field(
        default=30.0, gt=0, alias="JIESU_DISPATCHER_WINDOW_MINUTES"
    )
    max_reassignments: int = Field(default=3, ge=0, alias="JIESU_MAX_REASSIGNMENTS")
    max_unsatisfied_rounds: int = Field(default=2, ge=0, alias="JIESU_MAX_UNSATISFIED_ROUNDS")
    escalation_step_hours: float = Field(default=2.0, gt=0, alias="JIESU_ESCALATION_STEP_HOURS")
    # 并单: this many repeat reports of an open problem (the original plus them is the third
    # report) put the unit under supervision
    repeats_before_supervision: int = Field(
        default=2, ge=1, alias="JIESU_REPEATS_BEFORE_SUPERVISION"
    )
    # How far ahead an extension (延期) may promise to finish.
    max_extension_days: float = Field(default=90.0, gt=0, alias="JIESU_MAX_EXTENSION_DAYS")
    repeat_window_days: float = Field(default=30.0, gt=0, alias="JIESU_REPEAT_WINDOW_DAYS")
    # 退单审核 (issue 14): a department's return waits for the centre to uphold or reject it.
    return_needs_approval: bool = Field(default=False, alias="JIESU_RETURN_NEEDS_APPROVAL")
    # 延期: approved extensions per case, and how long the centre has to decide a request
    # (undecided by then: approved, and the lapse recorded against the centre).
    max_extensions: int = Field(default=2, ge=0, alias="JIESU_MAX_EXTENSIONS")
    extension_decision_hours: float = Field(
        default=8.0, gt=0, alias="JIESU_EXTENSION_DECISION_HOURS"
    )
    # 退单审核时限: how long the centre has to decide a return that needs its approval
    # (undecided by then: upheld, and the lapse recorded against the centre).
    return_decision_hours: float = Field(default=8.0, gt=0, alias="JIESU_RETURN_DECISION_HOURS")
    # 不作为信号: reports of a problem whose earlier cases were replied to and closed within
    # this window are linked to them; this many (the new one included) mean supervision.
    inaction_window_days: float = Field(default=90.0, gt=0, alias="JIESU_INACTION_WINDOW_DAYS")
    inaction_reports_before_supervision: int = Field(
        default=3, ge=2, alias="JIESU_INACTION_REPORTS_BEFORE_SUPERVISION"
    )
    # Key of the citizen tokens (jiesu/access/citizen_tokens.py). Empty: a secret generated into the
    # database at migration, which keeps tokens out of the report tables but not out of a
    # whole-database copy. Set it in production (e.g. `openssl rand -base64 32`).
    token_secret: SecretStr = Field(default=SecretStr(""), alias="JIESU_TOKEN_SECRET")
    # How long the API waits for a case's workflow to answer a query before it answers from
    # the read model instead (a worker that is down must not hang the request).
    query_timeout_seconds: float = Field(default=2.0, gt=0, alias="JIESU_QUERY_TIMEOUT_SECONDS")
    # How long POST /api/v1/reports/{kind}/{day} waits for the report's workflow before it
    # answers 503 report_pending (the run goes on): no worker polling must not hang the request.
    report_wait_seconds: float = Field(default=60.0, gt=0, alias="JIESU_REPORT_WAIT_SECONDS")
    api_host: str = Field(default="127.0.0.1", alias="JIESU_API_HOST")
    api_port: int = Field(default=8000, alias="JIESU_API_PORT")
    # The address citizens and staff reach the console at, used in the links sent by SMS and
    # e-mail (the citizen's follow-up link). Empty: http://<api_host>:<api_port>.
    public_url: str = Field(default="", alias="JIESU_PUBLIC_URL")
    # Load the fictional demo county and its PUBLIC demo API keys at bootstrap. Off unless
    # asked for: `make run` turns it on, docker-compose and `jiesu bootstrap` leave it off.
    demo_data: bool = Field(default=False, alias="JIESU_DEMO_DATA")
    # Failed authentications (unknown or revoked API key, wrong citizen token) one client may
    # make per window; past that it is answered 429 until the window has moved on.
    auth_failure_limit: int = Field(default=10, ge=1, alias="JIESU_AUTH_FAILURE_LIMIT")
    auth_failure_window_seconds: int = Field(
        default=60, ge=1, alias="JIESU_AUTH_FAILURE_WINDOW_SECONDS"
    )
    # How often each worker's statistics refresher brings the daily rollup up to date
    # (jiesu/stats/refresher.py): the statistics are at most about this much behind.
    stats_refresh_seconds: float = Field(default=5.0, gt=0, alias="JIESU_STATS_REFRESH_SECONDS")
    # Staff sessions (jiesu/access/sessions.py): a session unused this long ends, and every
    # session ends this long after its login, used or not.
    session_idle_minutes: float = Field(default=30.0, gt=0, alias="JIESU_SESSION_IDLE_MINUTES")
    session_max_hours: float = Field(default=12.0, gt=0, alias="JIESU_SESSION_MAX_HOURS")
    # An ended session's row is kept this long past its absolute expiry, then moved into the
    # sign-in log (staff_sign_ins, kept for good) by the hourly archive job.
    session_keep_days: float = Field(default=30.0, gt=0, alias="JIESU_SESSION_KEEP_DAYS")
    # --- channels (docs/channels.md) ---
    # The SMS gateway (jiesu/notify/sms.py): "log" records every message in the sms_log table
    # and never reaches a network (the embedded default, and the only one built in).
    sms_gateway: str = Field(default="log", alias="JIESU_SMS_GATEWAY")
    # The shared secret of the inbound SMS webhook's HMAC signature. Empty: every inbound SMS
    # is refused (401).
    sms_webhook_secret: SecretStr = Field(default=SecretStr(""), alias="JIESU_SMS_WEBHOOK_SECRET")
    # How far a signed webhook timestamp may lie from our clock (a replayed request is older).
    sms_webhook_tolerance_seconds: int = Field(
        default=300, ge=1, alias="JIESU_SMS_WEBHOOK_TOLERANCE_SECONDS"
    )
    # Where a report that comes without category and place (an SMS, an e-mail) is filed: a
    # category with no routing rule puts it in the centre's dispatch queue (人工派单), and the
    # grid stands for "place to be confirmed" (位置待核实).
    channel_category: str = Field(default="unclassified", alias="JIESU_CHANNEL_CATEGORY")
    channel_grid: str = Field(default="unlocated", alias="JIESU_CHANNEL_GRID")
    # Citizen self-service (自助提交): the one-time code's life and wrong tries, and the rate
    # limits (the `limits` library's notation, ";" between several) per phone and per client
    # address, on asking for a code and on filing a report.
    otp_ttl_seconds: int = Field(default=300, ge=30, alias="JIESU_OTP_TTL_SECONDS")
    otp_max_attempts: int = Field(default=5, ge=1, alias="JIESU_OTP_MAX_ATTEMPTS")
    otp_phone_limits: str = Field(
        default="1/minute;5/hour;10/day", alias="JIESU_OTP_PHONE_LIMITS"
    )
    otp_address_limits: str = Field(default="20/hour", alias="JIESU_OTP_ADDRESS_LIMITS")
    # Every code texted, whoever asks: what self-service's SMS may cost at most (a caller with
    # many addresses is bounded by nothing else).
    otp_total_limits: str = Field(default="500/hour;3000/day", alias="JIESU_OTP_TOTAL_LIMITS")
    report_phone_limits: str = Field(default="5/day", alias="JIESU_REPORT_PHONE_LIMITS")
    report_address_limits: str = Field(default="30/hour", alias="JIESU_REPORT_ADDRESS_LIMITS")
    # Inbound e-mail (jiesu/channels/mail.py): the complaints address, where the SMTP
    # listener listens, and the largest mail it takes (bigger: 552, nothing kept).
    mail_address: str = Field(default="12345@jiesu.localhost", alias="JIESU_MAIL_ADDRESS")
    mail_host: str = Field(default="127.0.0.1", alias="JIESU_MAIL_HOST")
    mail_port: int = Field(default=2525, alias="JIESU_MAIL_PORT")
    mail_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, alias="JIESU_MAIL_MAX_BYTES")
    # The outbox's sender address (jiesu/notify/outbox.py reads it too): inbound mail from it,
    # or from JIESU_MAIL_ADDRESS, is our own and dropped (a mail loop otherwise).
    smtp_from: str = Field(default="", alias="JIESU_SMTP_FROM")
    # Mails filed (cases and repeat reports), the `limits` library's notation (";" between
    # several; empty: none): per sender address (the From, lower case, without a +tag), per
    # sending domain, and per peer address (the SMTP client: behind the county's relay that is
    # the relay, so none by default). Past one: 451 4.7.1, the sending server retries later.
    mail_sender_limits: str = Field(default="10/hour;30/day", alias="JIESU_MAIL_SENDER_LIMITS")
    mail_domain_limits: str = Field(default="300/hour", alias="JIESU_MAIL_DOMAIN_LIMITS")
    mail_peer_limits: str = Field(default="", alias="JIESU_MAIL_PEER_LIMITS")
    # Automatic replies, all together (a forged From needs no second mail per victim): past it
    # the mail is filed and not answered (a log line; inbound_mail.replied_at stays empty).
    mail_reply_limits: str = Field(default="200/hour;1000/day", alias="JIESU_MAIL_REPLY_LIMITS")
    # The authserv-id of the relay in front of the listener, which writes (and strips forged)
    # Authentication-Results (RFC 8601): its DMARC or SPF fail means no automatic reply.
    # Empty: the header is the sender's word, and ignored.
    mail_authserv_id: str = Field(default="", alias="JIESU_MAIL_AUTHSERV_ID")
    # The largest request body the API reads (api/body_limit.py): bigger is 413 at once.
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=64 * 1024, alias="JIESU_MAX_BODY_BYTES")
    # Prometheus endpoints (docs/observability.md), host:port; empty: none. Their own ports,
    # apart from the API's: scrapers need no key, and the outside is kept off by not
    # publishing them (`make run` binds 127.0.0.1; docker-compose publishes neither).
    api_metrics_address: str = Field(
        default="", pattern=ADDRESS_PATTERN, alias="JIESU_API_METRICS_ADDRESS"
    )
    worker_metrics_address: str = Field(
        default="", pattern=ADDRESS_PATTERN, alias="JIESU_WORKER_METRICS_ADDRESS"
    )
    # Domain gauges (open cases by status, breaches, ladder steps, outbox backlog) are read
    # from PostgreSQL this often by each worker that serves metrics.
    domain_metrics_interval_seconds: float = Field(
        default=15.0, gt=0, alias="JIESU_DOMAIN_METRICS_INTERVAL_SECONDS"
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()

"""Channel round trips against a running stack (`make run`): how long a sending mail server
waits for its ``250`` (the case is filed before the answer), and how long the SMS gateway
waits for the webhook's answer. Sequential, one at a time: latency, not throughput.

    python -m bench.channels [--api http://127.0.0.1:8000] [--smtp 127.0.0.1:2525]
                             [--secret jiesu-demo-sms-secret] [--n 20]

Prints median and maximum per channel. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import smtplib
import statistics
import time
import uuid
from email.message import EmailMessage
from email.utils import make_msgid

import httpx


def mail_once(host: str, port: int, to: str) -> float:
    sender = f"bench-{uuid.uuid4().hex[:8]}@citizen.test"  # each mail a new case, no 并单
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, "路灯不亮"
    msg["Message-ID"] = make_msgid(domain="citizen.test")
    msg.set_content(f"幸福路{uuid.uuid4().hex[:8]}号的路灯不亮")
    data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    with smtplib.SMTP(host, port, timeout=60) as smtp:
        smtp.ehlo()
        smtp.mail(sender)
        smtp.rcpt(to)
        started = time.perf_counter()
        code, answer = smtp.data(data)
        elapsed = time.perf_counter() - started
    if code != 250:
        raise RuntimeError(f"{code} {answer!r}")
    return elapsed


def sms_once(http: httpx.Client, secret: bytes) -> float:
    phone = "137" + f"{uuid.uuid4().int % 10**8:08d}"
    body = json.dumps({"message_id": uuid.uuid4().hex, "from": phone, "text": "噪音扰民"}).encode()
    stamp = str(int(time.time()))
    mac = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Jiesu-Timestamp": stamp,
               "X-Jiesu-Signature": f"sha256={mac}"}  # fmt: skip
    started = time.perf_counter()
    response = http.post("/api/v1/channels/sms/inbound", content=body, headers=headers)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def _summary(name: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    median = statistics.median(ms)
    return f"{name:<28} n={len(ms):<3} median {median:7.1f} ms   max {ms[-1]:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--smtp", default="127.0.0.1:2525")
    parser.add_argument("--to", default="12345@jiesu.localhost")
    parser.add_argument("--secret", default="jiesu-demo-sms-secret")
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    host, _, port = args.smtp.rpartition(":")
    mails = [mail_once(host, int(port), args.to) for _ in range(args.n)]
    with httpx.Client(base_url=args.api, timeout=60) as http:
        texts = [sms_once(http, args.secret.encode()) for _ in range(args.n)]
    print(_summary("e-mail: DATA to 250", mails))
    print(_summary("SMS webhook: POST to 200", texts))


if __name__ == "__main__":
    main()

"""Channels (受理渠道) that come in by themselves: SMS (jiesu/notify/sms.py is the gateway),
the citizen self-service intake with one-time codes, and inbound e-mail over SMTP.

Each channel turns what it receives into a report filed through ``jiesu.intake`` (never a
copy of it) or, for an SMS answering a rating prompt, a rating. May import ``jiesu.case``,
``jiesu.access``, ``jiesu.intake``, ``jiesu.notify`` and the infrastructure modules; nothing
above (the API's routers and ``jiesu.ops`` call in).
"""

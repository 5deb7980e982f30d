"""Notifications: which notices a case's events cause (and to whom), and the outbox that sends
them at least once.

May import ``jiesu.case`` and the infrastructure modules; nothing above.
"""

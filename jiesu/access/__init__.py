"""Who may do what: API keys (hashed, revocable), citizen tokens (one per report, hashed),
staff accounts and their sessions, and who sees a case's content unmasked.

May import ``jiesu.case`` and the infrastructure modules; nothing above.
"""

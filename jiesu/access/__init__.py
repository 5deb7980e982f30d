"""Who may do what: API keys (hashed, revocable) and citizen tokens (one per report, hashed).

May import ``jiesu.case`` and the infrastructure modules; nothing above.
"""

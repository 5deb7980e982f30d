"""The read model: the PostgreSQL copy of every case (``cases``, ``case_events``) that lists,
statistics and citizens' views read, written from the workflows' projections together with the
notices the new events cause.

May import ``jiesu.case``, ``jiesu.notify``, ``jiesu.stats`` and the infrastructure modules;
nothing above (the projection activity and the doctor's repair call it).
"""

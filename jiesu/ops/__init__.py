"""Running and operating Jiesu: the ``jiesu`` command line, the embedded stack of ``make run``,
bootstrap (migrations, search attributes, schedules), demo data, keys and the doctor.

The one package under ``jiesu`` allowed to import ``workflows`` and ``activities``; nothing
imports it but entry points and tests.
"""

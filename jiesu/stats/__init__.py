"""Statistics (分析研判, 考评): indicator definitions, department evaluation, report periods.

May import ``jiesu.case`` and the infrastructure modules; nothing above.
"""

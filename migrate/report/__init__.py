"""`pypissh-migrate report`: who still uploads over SSH, and whether the path can be switched off.

`build.build_report` gathers the database's aggregates into a `model.Report`; `logic` holds the
pure rules (statuses, trend, verdict); `terminal`, `tabular` (CSV, JSON), `html` and `chart`
present it.
"""

"""`pypissh-migrate report`: who still uploads over SSH, and whether the path can be switched off.

`build.build_report` gathers the database's aggregates into a `model.Report`; `logic` holds the
pure rules (statuses, trend, verdict); `terminal`, `tabular` (CSV, JSON), `html` (its chart as
inline SVG from `svg`) and `chart` (the PNG, with matplotlib from the `[report]` extra) present it;
`plot` holds what both charts share.
"""

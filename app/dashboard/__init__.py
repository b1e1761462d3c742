"""The Streamlit dashboard: pages under `pages/`, shared queries, cached loaders and widgets.

`streamlit_app.py` at the repository root is the entry; it only sets up navigation. Pages never
hold SQL: they call `app.dashboard.data` (cached loaders), which call `app.dashboard.queries` and
`app.reports`, where the aggregation runs in the database.
"""

"""The Streamlit dashboard: pages under `pages/`, shared queries, cached loaders and widgets.

`streamlit_app.py` at the repository root is the entry: it sets up navigation and, through
`shell`, what every page shares (sign-in and role from `auth`, the sidebar from `filters`, the
warehouse checks). Pages never hold SQL: they call the cached loaders (`data`, `loaders`),
which call the query modules (`queries`, `queries_spend`, `queries_alerts`,
`queries_collectors`) and `app.reports`, where the aggregation runs in the database. Changes
(release, approve, run now) go through `actions`, which checks the role itself.
"""

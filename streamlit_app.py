"""The dashboard's entry: `streamlit run streamlit_app.py` (or `spendguard dashboard`).

Only navigation and what every page shares live here: the sign-in gate, the sidebar filters
(drawn here so they keep their state across pages) and the warehouse checks
(`app.dashboard.shell`). Each page is one file under `app/dashboard/pages/`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.dashboard import shell

PAGES = Path(__file__).resolve().parent / "app" / "dashboard" / "pages"

st.set_page_config(page_title="spendguard", page_icon=":material/savings:", layout="wide")
shell.start()
pages = [
    st.Page(PAGES / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page(PAGES / "unit_costs.py", title="Unit costs", icon=":material/price_check:"),
    st.Page(PAGES / "spend.py", title="Spend explorer", icon=":material/stacked_bar_chart:"),
    st.Page(PAGES / "gpu.py", title="GPU cost", icon=":material/memory:"),
    st.Page(PAGES / "alerts.py", title="Alerts & kill switches", icon=":material/gpp_maybe:"),
    st.Page(PAGES / "collectors.py", title="Collectors", icon=":material/sync:"),
]
st.navigation(pages).run()

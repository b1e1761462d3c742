"""The dashboard's entry: `streamlit run streamlit_app.py` (or `spendguard dashboard`).

Only navigation lives here; each page is one file under `app/dashboard/pages/`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "app" / "dashboard" / "pages"

st.set_page_config(page_title="spendguard", layout="wide")
page = st.navigation(
    [
        st.Page(PAGES / "unit_costs.py", title="Unit costs", icon="💵", default=True),
        st.Page(PAGES / "gpu.py", title="GPU cost", icon="🖥️"),
    ]
)
page.run()

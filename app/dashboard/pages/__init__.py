"""One file per dashboard page, run by `st.navigation` (see streamlit_app.py)."""

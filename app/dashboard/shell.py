"""What every page shares, set up once per run by the entry script before the page runs:
the configuration, who is looking (and their role), the warehouse's state and the sidebar.

Pages call `page(title)`: it draws the title and, when the warehouse cannot be read or holds
nothing yet, says what to do and returns None (the page then stops drawing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from app.dashboard import data, versions
from app.dashboard.auth import Identity, identity_from_claims, local_identity
from app.dashboard.filters import Selection, sidebar
from app.dashboard.queries import DataBounds
from app.errors import SpendguardError
from app.settings import Settings

NO_DATA = (
    "The warehouse has no requests yet. Load some with `spendguard demo` (generated demo "
    "traffic) or `spendguard ingest traces PATH` (your OTLP JSON files), then reload this page."
)
NO_SCHEMA = (
    "The warehouse has no tables yet. Run `spendguard db upgrade`, then load data with "
    "`spendguard demo` or `spendguard ingest traces PATH`."
)
NO_MATCH = "No requests in these days with these filters. Widen the days or clear a filter."

State = Literal["ok", "no_schema", "no_data", "error"]
_KEY = "_spendguard_context"


@dataclass(frozen=True, slots=True)
class Context:
    settings: Settings | None
    url: str | None
    bounds: DataBounds | None
    selection: Selection
    identity: Identity
    state: State
    error: str | None = None

    @property
    def timezone(self) -> str:
        return self.selection.timezone


def start() -> Context:
    """Read the configuration and the warehouse, gate on sign-in, draw the sidebar. Stops the
    run (after saying why) when the person must sign in or may not view."""
    try:
        settings = data.settings()
    except SpendguardError as exc:
        return _remember(_failed(None, str(exc)))
    identity = _who(settings)
    url = settings.database.url
    try:
        if not data.has_warehouse(url):
            data.has_warehouse.clear(url)  # look again on the next run, not after the TTL
            return _remember(_empty(settings, identity, "no_schema"))
        # The data version of this rerun, which the cached loaders are keyed by.
        versions.observe(url, data.engine(url), versions.config_digest(settings))
        bounds = data.data_bounds(url)
        if versions.has_marks(url):  # days wait for a rebuild: start it, don't wait for it
            data.freshen(url)
    except (SpendguardError, SQLAlchemyError) as exc:
        detail = str(exc).splitlines()[0] if isinstance(exc, SQLAlchemyError) else str(exc)
        return _remember(_failed(settings, detail, identity))
    if bounds is None:
        data.data_bounds.clear(url)  # so data loaded a moment from now shows on reload
    selection = sidebar(url, bounds, settings.dashboard.timezone)
    _signed_in_as(settings, identity)
    state: State = "ok" if bounds is not None else "no_data"
    return _remember(Context(settings, url, bounds, selection, identity, state))


def context() -> Context:
    found = st.session_state.get(_KEY)
    if not isinstance(found, Context):  # a page run on its own (not through the entry)
        found = start()
    return found


def page(title: str, *, needs_requests: bool = True) -> Context | None:
    """The page's title and the shared context; None (after saying what to do) when there
    is nothing to show. Pages about runs and switches pass `needs_requests=False`."""
    st.title(title)
    ctx = context()
    if ctx.state == "error":
        st.error("spendguard cannot read its configuration or warehouse:")
        st.code(ctx.error or "unknown error")
        return None
    if ctx.state == "no_schema":
        st.info(NO_SCHEMA)
        return None
    if ctx.state == "no_data" and needs_requests:
        st.info(NO_DATA)
        return None
    return ctx


def _remember(ctx: Context) -> Context:
    st.session_state[_KEY] = ctx
    return ctx


def _empty(settings: Settings, identity: Identity, state: State) -> Context:
    selection = sidebar(None, None, settings.dashboard.timezone)
    return Context(settings, settings.database.url, None, selection, identity, state)


def _failed(settings: Settings | None, detail: str, identity: Identity | None = None) -> Context:
    who = identity or Identity("local user", "viewer")
    selection = sidebar(None, None, settings.dashboard.timezone if settings else "UTC")
    url = settings.database.url if settings else None
    return Context(settings, url, None, selection, who, "error", detail)


def _who(settings: Settings) -> Identity:
    config = settings.dashboard
    if config.auth == "none":
        return local_identity(config)
    provider = config.oidc_provider
    if not _auth_configured(provider):
        st.title("spendguard")
        st.error(
            "`dashboard.auth: oidc` needs the identity provider in `.streamlit/secrets.toml` "
            "(in the directory spendguard starts from): an `[auth]` section"
            + (f" with `[auth.{provider}]`" if provider else "")
            + " holding redirect_uri, cookie_secret, client_id, client_secret and "
            'server_metadata_url (see the README, "The dashboard").'
        )
        st.stop()
    if not st.user.get("is_logged_in"):
        st.title("spendguard")
        st.write("Sign in to see the cost dashboard.")
        if st.button("Sign in", type="primary"):
            if provider:
                st.login(provider)
            else:
                st.login()
        st.stop()
    identity = identity_from_claims(dict(st.user.to_dict()), config)
    if identity is None:
        st.title("spendguard")
        st.error(
            f"{st.user.get('email') or 'This account'} may not view this dashboard. Ask an "
            "operator to add you to `dashboard.viewers` in spendguard.yaml."
        )
        if st.button("Sign out"):
            st.logout()
        st.stop()
    return identity


def _auth_configured(provider: str | None) -> bool:
    try:
        section = st.secrets.get("auth")
    except FileNotFoundError:  # no secrets file at all
        return False
    if not section:
        return False
    return provider is None or provider in section


def _signed_in_as(settings: Settings, identity: Identity) -> None:
    with st.sidebar:
        st.divider()
        role = "operator" if identity.is_operator else "viewer (read-only)"
        st.caption(f"Signed in as **{_plain(identity.name)}** · {role}")
        if settings.dashboard.auth == "oidc" and st.button("Sign out", key="sign_out"):
            st.logout()


def _plain(text: str) -> str:
    """Markdown-escape a name (emails come from the identity provider, not from us)."""
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!<>|$~" else c for c in text)

"""Who is looking at the dashboard, and what they may do.

Two roles: a **viewer** sees every page; an **operator** may also change state (release or
approve a kill switch, run a collector now). `dashboard.auth` decides who someone is:

- `none` (default): nobody signs in. `spendguard dashboard` then listens on 127.0.0.1 only, so
  whoever opens it is at this machine; they get `dashboard.local_role` (operator by default, as
  they could run `spendguard kill release` in a shell anyway), as "local user".
- `oidc`: Streamlit's `st.login` signs people in with the provider of `.streamlit/secrets.toml`;
  `dashboard.operators` and `dashboard.viewers` map their email (case-insensitive) or groups
  (`group:NAME`, from the ID-token claim `dashboard.groups_claim`) to a role.

The role is enforced where the change is made (`app.dashboard.actions`), not only by
disabling buttons: a viewer's request to act is refused there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from app.settings import DashboardConfig

Role = Literal["viewer", "operator"]
VIEWER: Role = "viewer"
OPERATOR: Role = "operator"
LOCAL_NAME = "local user"
GROUP_PREFIX = "group:"


@dataclass(frozen=True, slots=True)
class Identity:
    """A person and their role; `name` is what the audit log records as who did it."""

    name: str
    role: Role

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR

    @property
    def audit_name(self) -> str:
        return f"{self.name} (dashboard)"


def local_identity(config: DashboardConfig) -> Identity:
    return Identity(LOCAL_NAME, config.local_role)


def role_for(email: str | None, groups: Iterable[str], config: DashboardConfig) -> Role | None:
    """The role of a signed-in person, or None when they may not even view."""
    ids = {GROUP_PREFIX + g.strip().lower() for g in groups if g and g.strip()}
    if email:
        ids.add(email.strip().lower())

    def listed(entries: Iterable[str]) -> bool:
        return any(e.strip().lower() in ids for e in entries)

    if listed(config.operators):
        return OPERATOR
    if not config.viewers or listed(config.viewers):
        return VIEWER
    return None


def groups_of(claims: Mapping[str, Any], claim: str) -> list[str]:
    """The groups in an ID token's claim: a list of names (a single name is accepted too)."""
    value = claims.get(claim)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []


def identity_from_claims(claims: Mapping[str, Any], config: DashboardConfig) -> Identity | None:
    email = claims.get("email")
    email_text = str(email) if email else None
    role = role_for(email_text, groups_of(claims, config.groups_claim), config)
    if role is None:
        return None
    name = email_text or str(claims.get("name") or claims.get("sub") or "signed-in user")
    return Identity(name, role)

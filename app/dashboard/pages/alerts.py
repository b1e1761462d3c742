"""Page "Alerts & kill switches": the open switches (release, approve: operators only, each
confirmed in a dialog and written to the audit log with who), what changed them, the alert
history of the period, every rule with its state, and a backtest of the rules over history.

Changes go through `app.dashboard.actions`, which checks the role itself: a viewer's buttons
are disabled, and the action would refuse them anyway.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import streamlit as st

from app.dashboard import actions, data, loaders, tables
from app.dashboard.formatting import ago_text, local_time_text
from app.dashboard.queries_alerts import RuleStatus
from app.dashboard.shell import Context, page
from app.errors import SpendguardError
from app.killswitch.model import PENDING, Switch

DONE_KEY = "_switch_done"
ASK_KEY = "_switch_ask"  # (verb, switch id) awaiting confirmation in the dialog
MAX_CARDS = 30  # open switches drawn as cards; the others in a table


def main() -> None:
    ctx = page("Alerts & kill switches", needs_requests=False)
    if ctx is None:
        return
    _switches(ctx)
    _switch_log(ctx)
    _history(ctx)
    _rules(ctx)
    _backtest(ctx)


def _switches(ctx: Context) -> None:
    assert ctx.url is not None
    st.subheader("Kill switches")
    done = st.session_state.pop(DONE_KEY, None)
    if done:
        st.success(done, icon=":material/check_circle:")
    switches = loaders.open_switches(ctx.url)
    if not ctx.identity.is_operator:
        st.caption(
            "You are a viewer: releasing and approving need the operator role "
            "(`dashboard.operators` in spendguard.yaml)."
        )
    if not switches:
        st.info(
            "No kill switch is active or waiting for approval. Rules with the `kill` action "
            "trip them; operators add them with `spendguard kill add`."
        )
    for switch in switches[:MAX_CARDS]:
        _switch_card(ctx, switch)
    if len(switches) > MAX_CARDS:
        _more_switches(ctx, switches[MAX_CARDS:])
    asked = st.session_state.get(ASK_KEY)
    if asked is not None:
        verb, switch_id = asked
        found = next((s for s in switches if s.id == switch_id), None)
        if found is None:
            _forget()  # released or expired meanwhile
        else:
            _confirm(ctx, found, verb)
    with st.expander("Recent switches, released and expired included"):
        recent = loaders.recent_switches(ctx.url)
        tables.show_frame(_switch_frame(recent, ctx.timezone), key="switches_recent")


def _more_switches(ctx: Context, rest: list[Switch]) -> None:
    """Past `MAX_CARDS`, the other open switches as a table, and one card for the one picked
    (a rule that kills per user can open thousands: a card each would take seconds to draw)."""
    st.caption(f"{len(rest)} more open switches, in the table below: pick one to act on it.")
    by_id = {s.id: s for s in rest}
    picked = st.selectbox(
        "Open switch",
        list(by_id),
        index=None,
        format_func=lambda i: f"#{i} · {by_id[i].scope.describe()}",
        key="switch_pick",
    )
    if picked is not None:
        _switch_card(ctx, by_id[picked])
    tables.show_frame(_switch_frame(rest, ctx.timezone), key="switches_more")


def _switch_card(ctx: Context, switch: Switch) -> None:
    pending = switch.state == PENDING
    with st.container(border=True):
        left, right = st.columns([5, 2])
        state = ":orange[**pending approval**]" if pending else ":red[**active**]"
        dry = " · dry run (never enforced)" if switch.dry_run else ""
        left.markdown(f"#{switch.id} · {state}{dry}")
        left.text(f"blocks {switch.scope.describe()}")
        left.caption(
            f"{switch.origin} {switch.created_by} · since "
            f"{local_time_text(switch.created_at, ctx.timezone)} · "
            + (
                f"expires {local_time_text(switch.expires_at, ctx.timezone)}"
                if switch.expires_at
                else "no expiry"
            )
        )
        left.text(f"reason: {switch.reason}")
        allowed = ctx.identity.is_operator
        why = None if allowed else "Needs the operator role."
        for verb in ("approve", "release") if pending else ("release",):
            right.button(
                verb.title(),
                key=f"{verb}_{switch.id}",
                disabled=not allowed,
                help=why,
                type="primary" if verb == "approve" else "secondary",
                on_click=_ask,
                args=(verb, switch.id),
            )


def _ask(verb: str, switch_id: int) -> None:
    st.session_state[ASK_KEY] = (verb, switch_id)


def _forget() -> None:
    st.session_state.pop(ASK_KEY, None)


@st.dialog("Confirm", on_dismiss=_forget)
def _confirm(ctx: Context, switch: Switch, verb: str) -> None:
    effect = (
        "Gateways start refusing this scope within a second."
        if verb == "approve"
        else "Gateways let this scope through again within a second."
    )
    st.markdown(f"**{verb.title()} kill switch #{switch.id}?**")
    st.text(f"{switch.scope.describe()}\nreason: {switch.reason}")
    st.caption(f"{effect} Recorded in the audit log as {ctx.identity.audit_name}.")
    yes, no = st.columns(2)
    if yes.button(f"Yes, {verb}", type="primary", key=f"confirm_{verb}_{switch.id}"):
        _apply(ctx, switch, verb)
    if no.button("Cancel", key=f"cancel_{verb}_{switch.id}"):
        _forget()
        st.rerun()


def _apply(ctx: Context, switch: Switch, verb: str) -> None:
    assert ctx.url is not None
    assert ctx.settings is not None
    act = actions.approve_switch if verb == "approve" else actions.release_switch
    _forget()
    try:
        changed = act(data.engine(ctx.url), ctx.settings, ctx.identity, switch.id)
    except SpendguardError as exc:
        st.error(str(exc))
        return
    loaders.clear_switches()
    st.session_state[DONE_KEY] = (
        f"Kill switch #{changed.id} {'approved' if verb == 'approve' else 'released'} "
        f"by {ctx.identity.name}."
    )
    st.rerun()


def _switch_frame(switches: list[Switch], zone: str) -> pl.DataFrame:
    now = loaders.now()
    return pl.DataFrame(
        {
            "Id": [s.id for s in switches],
            "State": [s.state_at(now) for s in switches],
            "Scope": [s.scope.describe() for s in switches],
            "Reason": [s.reason for s in switches],
            "Origin": [f"{s.origin}: {s.created_by}" for s in switches],
            "Created": [local_time_text(s.created_at, zone) for s in switches],
            "Expires": [
                local_time_text(s.expires_at, zone) if s.expires_at else "—" for s in switches
            ],
            "Last change by": [s.updated_by or "" for s in switches],
            "Dry run": [s.dry_run for s in switches],
        },
        schema_overrides={"Id": pl.Int64},
    )


def _switch_log(ctx: Context) -> None:
    assert ctx.url is not None
    entries = loaders.switch_audit(ctx.url)
    with st.expander("Who changed switches (audit log)"):
        if not entries:
            st.caption("No kill-switch change recorded yet.")
            return
        frame = pl.DataFrame(
            {
                "At": [local_time_text(e.at, ctx.timezone) for e in entries],
                "Event": [e.kind for e in entries],
                "Switch": [e.detail.get("switch_id") for e in entries],
                "By": [str(e.detail.get("by") or "") for e in entries],
                "Scope": [str(e.detail.get("scope") or "") for e in entries],
                "Reason": [str(e.detail.get("reason") or "") for e in entries],
            },
            schema_overrides={"Switch": pl.Int64},
        )
        tables.show_frame(frame, key="switch_audit")


def _history(ctx: Context) -> None:
    assert ctx.url is not None
    sel = ctx.selection
    st.subheader("Alert history")
    rows = loaders.alert_history(ctx.url, sel.since, sel.until)
    st.caption(f"Firings, re-notifications and resolutions, {sel.since} to {sel.last_day} (UTC).")
    if not rows:
        st.info(
            "No alert in these days. Rules are evaluated by `spendguard worker` (or "
            "`spendguard alerts run`); `spendguard rules check` says what each rule does."
        )
        return
    frame = pl.DataFrame(
        {
            "At": [local_time_text(r.at, ctx.timezone) for r in rows],
            "Rule": [r.rule_id for r in rows],
            "Group": [", ".join(f"{k}={v}" for k, v in r.group.items()) or "(all)" for r in rows],
            "Event": [r.kind for r in rows],
            "Severity": [r.severity for r in rows],
            "Value": [r.value for r in rows],
            "Threshold": [r.threshold for r in rows],
            "Requests": [r.requests for r in rows],
            "Delivery": [r.delivery for r in rows],
            "Method": [r.method for r in rows],
        },
        schema_overrides={"Value": pl.String, "Threshold": pl.String},
    )
    tables.show_frame(frame, key="alert_history")


def _rules(ctx: Context) -> None:
    assert ctx.url is not None
    st.subheader("Rules")
    statuses = loaders.rule_statuses(ctx.url)
    if not statuses:
        st.info("No rule is configured: add them under `rules:` in spendguard.yaml (README).")
        return
    now = loaders.now()
    frame = pl.DataFrame(
        {
            "Rule": [s.rule_id for s in statuses],
            "Enabled": [s.enabled for s in statuses],
            "Last evaluated": [_evaluated_text(s, now, ctx.timezone) for s in statuses],
            "Groups judged": [s.evaluated_groups for s in statuses],
            "Firing groups": [s.firing_groups for s in statuses],
            "Last event": [
                f"{s.last_event} {local_time_text(s.last_event_at, ctx.timezone)}"
                if s.last_event_at
                else "never fired"
                for s in statuses
            ],
            "Severity": [s.severity for s in statuses],
            "Actions": [", ".join(s.actions) for s in statuses],
            "What it does": [s.summary for s in statuses],
        },
        schema_overrides={"Groups judged": pl.Int64},
    )
    tables.show_frame(
        frame,
        key="rules",
        column_config={
            "Last evaluated": st.column_config.TextColumn(
                "Last evaluated",
                help="When `spendguard worker` (or `spendguard alerts run`) last judged the "
                "rule, and the moment it judged.",
            ),
            "Groups judged": tables.count_column(
                "Groups judged",
                "Groups with data in the rule's window, and those firing before it, judged in "
                "that evaluation.",
            ),
            "Firing groups": tables.count_column("Firing groups", "Groups firing now."),
        },
    )


def _evaluated_text(status: RuleStatus, now: datetime, zone: str) -> str:
    if status.evaluated_at is None:
        return "not yet" if status.enabled else "disabled"
    ago = ago_text(status.evaluated_at, now)
    return f"{ago} ({local_time_text(status.evaluated_at, zone)})"


@st.fragment
def _backtest(ctx: Context) -> None:
    assert ctx.url is not None
    assert ctx.settings is not None
    st.subheader("Backtest")
    ids = [r.id for r in ctx.settings.rules]
    if not ids:
        st.caption("Nothing to backtest without rules.")
        return
    sel = ctx.selection
    start = max(sel.since, sel.until - timedelta(days=7))
    with st.form("backtest"):
        chosen = st.multiselect("Rules", ids, default=ids, key="backtest_rules")
        days = st.date_input(
            "Days (UTC)", value=(start, sel.last_day), format="YYYY-MM-DD", key="backtest_days"
        )
        run = st.form_submit_button("Replay the rules")
    st.caption(
        "What the rules would have fired, re-notified and resolved over stored history (like "
        "`spendguard rules backtest`): nothing is stored or sent."
    )
    if not run:
        return
    picked = [d for d in (days if isinstance(days, tuple) else (days,)) if d is not None]
    if not picked or not chosen:
        st.warning("Pick at least one rule and a day.")
        return
    first, last = min(picked), max(picked)
    records = loaders.backtest_records(
        ctx.url, first, last + timedelta(days=1), tuple(sorted(chosen))
    )
    if not records:
        st.success("Nothing would have fired in these days.")
        return
    frame = pl.DataFrame(
        [{k: (str(v) if v is not None else None) for k, v in r.items()} for r in records]
    )
    tables.show_frame(frame, key="backtest_result")


if __name__ == "__main__":  # Streamlit runs a page as __main__; importing it draws nothing
    main()

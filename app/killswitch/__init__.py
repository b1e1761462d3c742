"""Kill switches: a switch blocks a scope (endpoint, model, user, team; `*`/`?` globs) at the
gateways until it expires or an operator releases it.

config.py    the `gateways:` section (pydantic; mounted on Settings)
model.py     a switch, its scope and states (plain dataclasses)
index.py     `SwitchIndex.decide(...)`: the in-memory answer of the decision API
store.py     switch rows: add, release, approve, expire, list; audit and version in one transaction
rules.py     the `kill` action of a firing rule: one switch per firing group
events.py    what goes out on a change: one JSON event per change, queued in the outbox
destinations.py  outbox destinations derived from `gateways:`, and who sends each kind
litellm.py   the LiteLLM adapter (block/unblock end users and teams through its admin API)
refresh.py   keeps an API process's index current (a version check every second)
live.py      the API's background work: near-real-time kill rules, pushing the outbox
metrics.py   decision counters and latency histogram for /metrics

The package imports nothing at load time, so `app.settings` can mount `config` without cycles.
"""

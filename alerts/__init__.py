"""Rules engine and alerting (kill switches come with their own feature).

config.py      the `notifiers:`, `rules:`, `alerts:` sections (pydantic; mounted on Settings)
windows.py     rolling and calendar windows (wall clock of a time zone)
rules.py       a rule compiled from config: window, condition, durations, config hash
conditions.py  `evaluate(series) → verdict`, registered by name: above, anomaly, forecast_above
metrics.py     a rule's metric per group over a window, from the shared unit-cost query
evaluate.py    judge a rule at one moment (shared by the engine and the backtest)
state.py       ok → firing → resolved per (rule, group); transitions stored with values
engine.py      `evaluate_once`, `run_cycle` (evaluate + deliver): what the worker schedules
backtest.py    replay rules over history, in memory
messages.py    the `Alert` a notifier renders
notifiers/     `send(message) → outcome`, registered by kind: slack, webhook
outbox.py      durable, at-least-once delivery with backoff, Retry-After, horizon, 410
audit.py       the append-only audit log
report.py      read-only views for the CLI
"""

"""Rules engine, notifiers and kill switches (rules are validated in `app.settings` for now;
evaluation and delivery land with the rules issue)."""

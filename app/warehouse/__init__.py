"""The warehouse: typed tables, engine/session handling, migrations and loads."""

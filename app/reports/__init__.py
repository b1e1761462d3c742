"""Roll-ups over the warehouse, shared by the CLI reports and the dashboard."""

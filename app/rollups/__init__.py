"""Daily rollups of the warehouse (`app.warehouse.tables_rollup`): which days are stale
(`dirty`), rebuilding them (`refresh`), and reading them as the unit-cost report does (`query`)."""

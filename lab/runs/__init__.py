"""The run machinery: store (SQLite), jobs (queue, processes), worker, live reads."""

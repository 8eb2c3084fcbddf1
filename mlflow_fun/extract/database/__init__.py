"""MLflow's back-end database read directly: its tables, the queries, `DatabaseSource`."""

"""Load: the only package that writes tables (the job, the plan, the writer, the views)."""

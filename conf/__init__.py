"""Example settings (YAML); installed as ``mlflow_fun.conf``. See docs/job.md."""

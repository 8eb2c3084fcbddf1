"""The job's spark-submit entry file; installed as ``mlflow_fun.jobs``."""

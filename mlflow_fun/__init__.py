"""mlflow-fun: MLflow runs as typed SQL tables and DataFrames; find the best run."""

__version__ = "0.1.0"

"""Extract: read experiments, runs and metric history from MLflow (REST, MLflow's client,
MLflow's database), with pagination, retries, two-ended pulls and incremental pulls."""

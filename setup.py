"""mlflow-fun: MLflow runs as typed SQL tables and DataFrames."""

import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(
    r'^__version__ = "([^"]+)"', Path("mlflow_fun/__init__.py").read_text(encoding="utf-8"), re.M
).group(1)

setup(
    name="mlflow-fun",
    version=VERSION,
    description="MLflow runs as typed Delta tables and DataFrames; find the best run.",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["mlflow_fun", "mlflow_fun.*"]),
    package_data={"mlflow_fun": ["py.typed", "log4j2.properties"]},
    install_requires=[
        "mlflow>=3.0,<4",
        "requests>=2.31",
        "pyarrow>=14",
        "pandas>=2.0,<3",
        "PyYAML>=6.0",
        "tqdm>=4.66",
        "sqlglot>=25",
        # Reads the job's Delta tables without a JVM (best --source table).
        "deltalake>=1.0",
    ],
    extras_require={
        # What a Spark cluster already provides.
        "spark": ["pyspark==4.2.0", "delta-spark==4.4.1"],
        # Drivers for MLflow's back-end database (sqlite needs none).
        "sql": ["psycopg2-binary>=2.9", "PyMySQL>=1.1"],
        "test": [
            "pytest>=8",
            # Two test processes: the integration tier waits on servers and JVMs.
            "pytest-xdist>=3.5",
            "psycopg2-binary>=2.9",
            "PyMySQL>=1.1",
            "chispa>=0.10",
            "scikit-learn>=1.4",
            "ruff>=0.6",
            "mypy>=1.10",
            "import-linter>=2.1",
            "types-requests",
            "types-PyYAML",
        ],
    },
    entry_points={"console_scripts": ["mlflow-fun=mlflow_fun.cli:main"]},
)

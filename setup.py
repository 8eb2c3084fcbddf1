"""The package list for setuptools; the metadata is in pyproject.toml.

The job's spark-submit entry file and the example settings live at the top of the
repository (jobs/, conf/) and ship inside the package as mlflow_fun.jobs and mlflow_fun.conf.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["mlflow_fun", "mlflow_fun.*"])
    + ["mlflow_fun.jobs", "mlflow_fun.conf"],
    package_dir={"mlflow_fun.jobs": "jobs", "mlflow_fun.conf": "conf"},
)

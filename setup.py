"""Package discovery only (metadata is in pyproject.toml): tasks/ and recipes/ stand at the
repository root and install inside the package, as titans_seq.tasks and titans_seq.recipes."""
from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["titans_seq", "titans_seq.*"]), "titans_seq.tasks", "titans_seq.recipes",
              *(f"titans_seq.tasks.{name}" for name in find_packages("tasks"))],
    package_dir={"titans_seq.tasks": "tasks", "titans_seq.recipes": "recipes"},
)

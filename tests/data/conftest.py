"""Fixtures for the data tests (helpers live in data_testkit, a uniquely named module)."""
from data_testkit import image_folder, mixed_csv  # noqa: F401  (fixtures)

"""hisbridge — HIS change-data-capture to the provincial health platform front-end database."""

__version__ = "0.1.0"

"""The package version, in one place: ``fastnn.__version__``, the wheel's metadata
(pyproject.toml reads it here) and what files record as ``fastnn_version``. A leaf module, so
that modules below the package's ``__init__`` can read it without importing the package."""

__version__ = "0.1.0"

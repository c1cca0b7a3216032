"""The package version: a leaf module, so that every stage can stamp its outputs with it."""

__version__ = "0.1.0"

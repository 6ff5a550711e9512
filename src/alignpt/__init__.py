"""alignpt: alignment pretraining toolkit."""

__version__ = "0.1.0"

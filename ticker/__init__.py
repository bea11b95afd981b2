"""ticker: a live breaking-news ticker."""

__version__ = "0.1.0"

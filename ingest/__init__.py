"""feedback-ingest: customer feedback from every channel, most pressing complaint first."""

__version__ = "0.1.0"

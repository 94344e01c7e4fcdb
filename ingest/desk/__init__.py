"""The complaint desk (role `desk`): a JSON API, a live event stream and a page,
mounted on the worker's one web server. See docs/desk.md."""

from ingest.desk.app import mount

__all__ = ["mount"]

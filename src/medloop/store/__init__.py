"""Persistence: SQLAlchemy models, repository functions, content-addressed blobs."""

from medloop.store.blobs import BlobStore
from medloop.store.db import Database

__all__ = ["BlobStore", "Database"]

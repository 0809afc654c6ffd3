"""The web platform: FastAPI app with a JSON API under /api and server-rendered pages.

Only this package imports FastAPI. Route handlers are a few lines over `medloop.workflows`;
domain errors become HTTP status codes in `errors`.

From an empty home to people labelling::

    medloop ingest medmnist pneumoniamnist
    medloop users add ann --role annotator          # prints a generated password once
    medloop users add dora --role doctor --password-stdin < dora.txt
    medloop tasks publish -p pneumoniamnist -k 100  # open tasks (plus gold questions)
    medloop serve                                   # http://127.0.0.1:8000, API docs at /docs

Gold questions need final labels (a doctor's review) to draw from.
"""

from medloop.web.app import create_app

__all__ = ["create_app"]

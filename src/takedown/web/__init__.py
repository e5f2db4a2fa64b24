"""The FastAPI app (``takedown serve``): platform API, regulator API, pages, feed, metrics."""

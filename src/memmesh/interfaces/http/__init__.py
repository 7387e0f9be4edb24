"""The HTTP face: a FastAPI app over the service (``create_app``) and the server that runs it."""

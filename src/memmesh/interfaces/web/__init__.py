"""The web inspector: server-rendered pages over the service, mounted at ``/ui`` by the HTTP face.

Pages call the service (the core) as the session's principal, never the HTTP API, so the
rules, scopes and errors are the ones every other face gets. See docs/web.md.
"""

from memmesh.interfaces.web.site import create_web_app

__all__ = ["create_web_app"]

"""Every request body is read as JSON, whatever its Content-Type says (none, text/plain, curl -d's form type):
the one thing a route does with a body. The seed's clients (statusek) send "raw json in the body" that way,
and one rule for every route beats a 415 on some. (What strict checking guards against, a browser's
cross-site request riding on its cookies, does not apply: the API takes no cookies, only a bearer token or,
for statusek, the instance token in the body.) A body that is not JSON is 400 malformed_json. The exceptions
read forms by their Content-Type: the statusek compatibility mode (/statusek/), as its upstream does, and the
web console (/console/), whose cookie is guarded by SameSite=Strict and Sec-Fetch-Site (api/console/session.py)."""

JSON = (b"content-type", b"application/json")


class JsonBodies:
    """ASGI middleware: the request's Content-Type is application/json for the routes."""

    def __init__(self, app, own_bodies: tuple = ()):
        self.app = app
        self.own_bodies = own_bodies  # path prefixes of routes that read their body by its Content-Type themselves

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not _route_path(scope).startswith(self.own_bodies):
            scope = {**scope, "headers": [*(h for h in scope["headers"] if h[0] != b"content-type"), JSON]}
        await self.app(scope, receive, send)


def _route_path(scope) -> str:
    """The path the routes match: behind a reverse proxy that keeps its prefix, without the root path."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path

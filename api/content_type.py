"""Every request body is read as JSON, whatever its Content-Type says (none, text/plain, curl -d's form type):
the one thing a route does with a body. The seed's clients (statusek) send "raw json in the body" that way,
and one rule for every route beats a 415 on some. (What strict checking guards against, a browser's
cross-site request riding on its cookies, does not apply: the API takes no cookies, only a bearer token or,
for statusek, the instance token in the body.) A body that is not JSON is 400 malformed_json. The one
exception is the statusek compatibility mode (/statusek/), which reads a form as its upstream does."""

JSON = (b"content-type", b"application/json")


class JsonBodies:
    """ASGI middleware: the request's Content-Type is application/json for the routes."""

    def __init__(self, app, own_bodies: tuple = ()):
        self.app = app
        self.own_bodies = own_bodies  # path prefixes of routes that read their body by its Content-Type themselves

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not scope["path"].startswith(self.own_bodies):
            scope = {**scope, "headers": [*(h for h in scope["headers"] if h[0] != b"content-type"), JSON]}
        await self.app(scope, receive, send)

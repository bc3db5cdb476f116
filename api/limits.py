"""A request body larger than the fleet accepts is refused with 413 before it is read whole."""

import json

from api.errors import error_body, seed_path


class BodyLimit:
    """ASGI middleware: refuses a body over `max_bytes`, by its Content-Length or, without one, once the
    chunks read add up to more. Room is left for the JSON around a payload of max_payload_bytes."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:  # the server reads no more than it declares
            if not declared.isdigit() or int(declared) > self.max_bytes:
                return await self._refuse(scope, send)
            return await self.app(scope, receive, send)
        # Chunked, of a length nobody said: read here, up to the limit, and handed on whole. (Raised while
        # the route reads it, the refusal would be FastAPI's 400 for a body it could not parse.)
        chunks, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.max_bytes:
                return await self._refuse(scope, send)
            more = message.get("more_body", False)
        whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay():
            nonlocal whole
            if whole is None:
                return await receive()  # after the body: a disconnect, when it comes
            message, whole = whole, None
            return message
        await self.app(scope, replay, send)

    async def _refuse(self, scope, send):
        body = json.dumps(error_body("too_large", f"the request body is larger than {self.max_bytes} bytes", None,
                                     seed_path(scope["path"]))).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


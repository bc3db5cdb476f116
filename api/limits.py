"""A request body larger than the fleet accepts is refused with 413 before it is read whole."""

import json


class BodyLimit:
    """ASGI middleware: refuses a body over `max_bytes`, by its Content-Length or, without one, once the
    chunks read add up to more. Room is left for the JSON around a payload of max_payload_bytes."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(send)
        seen = 0
        refused = False

        async def counted():
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    raise BodyTooLarge
            return message
        try:
            await self.app(scope, counted, send)
        except BodyTooLarge:
            if refused:
                await self._refuse(send)

    async def _refuse(self, send):
        body = json.dumps({"error": {"code": "too_large", "field": None,
                                     "message": f"the request body is larger than {self.max_bytes} bytes"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    pass

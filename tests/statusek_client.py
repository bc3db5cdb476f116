"""A client of the upstream statusek service, written from its documentation only (seed 001 and upstream's
README): its paths, its parameters as raw JSON in the body, and its reply fields. It knows nothing of
botfleet: no bearer token, no HTTP status but 200, no field upstream does not document. The tests point it
at /statusek/ to show that such a client works unchanged."""

import httpx


class StatusekError(Exception):
    """A reply with status false: upstream's message."""


class StatusekClient:
    def __init__(self, base_url: str, timeout_s: float = 15):
        self.http = httpx.Client(base_url=base_url.rstrip("/") + "/", timeout=timeout_s)

    def close(self):
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, path: str, **params) -> dict:
        """The whole reply of one call: {"status", "message", "data"}."""
        response = self.http.post(path, json=params)
        assert response.status_code == 200, f"upstream answers 200, got {response.status_code}: {response.text}"
        return response.json()

    def _data(self, path: str, **params) -> dict:
        reply = self.call(path, **params)
        if not reply["status"]:
            raise StatusekError(reply["message"])
        return reply["data"]

    def create(self, object_name: str, instance_timeout: int) -> str:
        return self._data("instance/create", object_name=object_name,
                          instance_timeout=instance_timeout)["instance_token"]

    def set_status(self, instance_token: str, status_name: str) -> None:
        self._data("status/setStatus", instance_token=instance_token, status_name=status_name)

    def status_is_set(self, instance_token: str, status_name: str) -> bool:
        return self._data("status/checkStatusIsSet", instance_token=instance_token,
                          status_name=status_name)["status_is_set"]

    def ready_to_set(self, instance_token: str, status_name: str) -> tuple[bool, str]:
        data = self._data("status/checkStatusIsReadyToSet", instance_token=instance_token, status_name=status_name)
        return data["status_is_ready_to_set"], data["status_is_ready_to_set_description"]

    def is_finished(self, instance_token: str) -> tuple[bool, str]:
        data = self._data("instance/checkIsFinished", instance_token=instance_token)
        return data["instance_is_finished"], data["instanse_is_finished_description"]

    def events(self, instance_token: str) -> list[dict]:
        """[{"Status": {"ObjectID", "StatusName", "StatusDesc", "StatusType", ...}, "EventCreationDt"}]."""
        return self._data("event/getEvents", instance_token=instance_token)["events"]

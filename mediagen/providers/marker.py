"""The marker that ties a prediction to the one create call that made it. Pure: no I/O.

Replicate has no idempotency key, no metadata and no tags; the only free-form value it stores
with a prediction and returns in every answer (create, get, list, webhook bodies) is the
``webhook`` URL. So the marker is the service's webhook URL with the job and the attempt that
sent the create in its query: ``<webhook base>?job=<job id>&attempt=<n>``. Putting it in the
model input instead would change what the model receives (and strict models reject unknown
keys). The URL is one the gateway can serve once webhooks are received; until then a delivery
to it fails and is harmless (only the ``completed`` event is asked for).

Reading a marker looks only at the query, so a changed base URL (a moved gateway) still finds
the predictions made before the move. Job ids are UUIDs, so no other job, and no other
deployment sharing the account, can carry the same marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

#: The only webhook event asked for: the marker's URL is then called once per prediction.
WEBHOOK_EVENTS = ("completed",)


@dataclass(frozen=True)
class Marker:
    """One create call: the job it is for and the job attempt that sent it."""

    job_id: str
    attempt: int

    def webhook_url(self, base_url: str) -> str:
        separator = "&" if "?" in base_url else "?"
        return f"{base_url}{separator}{urlencode({'job': self.job_id, 'attempt': self.attempt})}"

    @classmethod
    def from_webhook_url(cls, url: object) -> Marker | None:
        """The marker in a prediction's ``webhook`` value; None if it carries none."""
        if not isinstance(url, str):
            return None
        try:
            query = parse_qs(urlsplit(url).query, strict_parsing=False)
        except ValueError:
            return None
        jobs, attempts = query.get("job", []), query.get("attempt", [])
        if len(jobs) != 1 or len(attempts) != 1:
            return None
        attempt = attempts[0]
        if not (attempt.isascii() and attempt.isdigit()):
            return None
        return cls(jobs[0], int(attempt))

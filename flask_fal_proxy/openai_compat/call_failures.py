"""What a failed call to fal means: whether it can have reached fal, and how to answer it.

requests wraps the failures of sending a request and of reading its
headers, but a body read from ``response.raw`` (as every call here does,
under a size cap) raises urllib3's own exceptions: ``ProtocolError`` when
the answer is cut off, ``ReadTimeoutError`` when it stalls. Socket errors
can surface bare. :data:`TRANSPORT_ERRORS` names all of them, so no cut or
stalled answer falls through to a 500 that a client would retry.

Only a connection that was never made is known not to have reached fal;
every other failure may have left a paid job behind (:func:`never_sent`).
"""

from __future__ import annotations

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from . import errors

__all__ = ["TRANSPORT_ERRORS", "answer_for", "never_sent"]

TRANSPORT_ERRORS = (requests.RequestException, Urllib3Error, OSError)


def never_sent(exc: BaseException) -> bool:
    """Whether a failed call certainly did not reach fal: no connection was ever made."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or isinstance(
        exc, requests.exceptions.ProxyError
    ):
        return False
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


def answer_for(exc: BaseException) -> errors.OpenAIError:
    """A failed call: 502 if fal was unreachable or its answer cut off, 504 if it went silent."""
    if never_sent(exc):
        return errors.fal_unreachable()
    if isinstance(exc, (requests.Timeout, Urllib3Timeout, TimeoutError)):
        return errors.fal_timeout()
    return errors.fal_interrupted()

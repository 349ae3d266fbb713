"""Runs a generation through fal's queue: submit, poll, fetch, cancel.

The queue, not ``fal.run``, because an image can take longer than any HTTP
connection should be held open to fal, and because a queued job can be
cancelled: a job still running at the deadline is cancelled, so fal stops
working (and billing) for an answer nobody will receive. The status,
result and cancel calls of a job use the key that submitted it, since a job
belongs to the account that started it.

fal answers a submit with the URLs of the job; they are followed only if
they are on ``queue.fal.run`` under the submitted app and carry the request
id fal gave, otherwise the URLs are built from the request id as fal's
client does. Every call is prepared by the package's ``Relay`` (nothing from
the session or the environment is merged into a keyed call), with an explicit
timeout that never runs past the job's deadline and no redirects.

Polling waits on an ``Event`` that the other jobs of the same request set
when one of them fails, or that any of them sets when the client has gone
(:mod:`.departure`, checked between polls), so the rest are cancelled at
once instead of being paid for; under gevent the wait is a cooperative sleep.

A generation is paid for once fal has the submit, whether or not its answer
arrives. So a submit that fails in any way after it may have been sent (a
cut or stalled answer raises urllib3's own ``ProtocolError`` or
``ReadTimeoutError``, not a requests exception) is a 502 or 504 that marks
the request as submitted, which tells the client not to retry; only a
connection that was never made is safe to retry. Once fal has named the job,
any failure after it (polls that keep failing, a result that cannot be read,
the client gone) cancels the job before the error is raised.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import requests

from ..errors import ProxyError
from ..relay import Relay
from ..validation import parse_target_url
from . import errors, json_parts
from .call_failures import answer_for, never_sent
from .keys import KeyPool, fingerprint

__all__ = ["Progress", "QueueRunner", "fal_message"]

logger = logging.getLogger("flask_fal_proxy.openai_compat")

QUEUE = "https://queue.fal.run/"
MAX_RESULT_BYTES = 64 * 1024 * 1024
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,127}")
_RETRY_AFTER = re.compile(r"[0-9]{1,6}")
DEFAULT_RETRY_AFTER = "10"
# The first status poll, doubling up to the last: a job that is done in a
# second is seen within a few tens of milliseconds, a long one costs one poll
# a second.
FIRST_POLL = 0.05
MAX_POLL = 1.0
_TRANSIENT_POLL_FAILURES = 3
CANCEL_TIMEOUT = 5.0


Observe = Callable[[str, str, int, Mapping[str, str]], None]


@dataclass
class Progress:
    """What the jobs of one request share: whether any was submitted, and when to give up.

    ``client_left``, if given, says whether the client has gone; it is asked
    between status polls. ``cause`` is the error the abandoned jobs raise.
    """

    submitted: bool = False
    abandon: threading.Event = field(default_factory=threading.Event)
    client_left: Callable[[], bool] | None = None
    cause: errors.OpenAIError | None = None
    # The request's fal keys, when not the runner's own; and who hears of
    # every answer fal gives the jobs (the admission path's observers).
    keys: KeyPool | None = None
    observe: Observe | None = None

    def check_client(self) -> None:
        if self.client_left is not None and not self.abandon.is_set() and self.client_left():
            logger.info("the client has gone; cancelling its jobs")
            self.cause = errors.client_disconnected()
            self.abandon.set()


@dataclass(frozen=True)
class _Job:
    key: str
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


class _Abandoned(Exception):
    """Another job of the same request failed; this one was cancelled."""


def _canonical(url: str) -> bool:
    try:
        parse_target_url(url)
    except ProxyError:
        return False
    return True


def _retry_after(headers: Mapping[str, str], previous: str) -> str:
    """fal's ``Retry-After`` when it is a plain number of seconds, else the one seen before."""
    value = (headers.get("Retry-After") or "").strip()
    return value if _RETRY_AFTER.fullmatch(value) else previous


def _poll_failed(exc: Exception, failures: int) -> None:
    """Raise once polls have failed too often in a row; before that, poll again.

    A cut, stalled or reset poll says nothing about the job itself, which
    may well be fine.
    """
    logger.warning("fal status poll failed (%s)", type(exc).__name__)
    if failures >= _TRANSIENT_POLL_FAILURES:
        if isinstance(exc, errors.OpenAIError):
            raise exc
        raise answer_for(exc) from None


def fal_message(body: Any, fallback: str = "no details") -> str:
    """fal's error body as one readable line: ``"prompt: field required"``."""
    detail = (
        body.get("detail", body.get("message", body.get("error")))
        if isinstance(body, dict)
        else None
    )
    if isinstance(detail, str) and detail.strip():
        return detail.strip()[:1000]
    if isinstance(detail, list):
        parts = []
        for item in detail[:20]:
            if not isinstance(item, dict):
                parts.append(str(item))
                continue
            loc = [str(p) for p in item.get("loc", ()) or () if p != "body"]
            msg = str(item.get("msg", "invalid value"))
            parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
        if parts:
            return "; ".join(parts)[:1000]
    return fallback


class QueueRunner:
    """Submits jobs with key failover and follows them to a result or a cancel."""

    def __init__(
        self,
        session: requests.Session,
        keys: KeyPool,
        *,
        generation_timeout: float = 300.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        first_poll: float | None = None,
        max_poll: float | None = None,
    ) -> None:
        self.keys = keys
        self.relay = Relay(
            session,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            credential_header="Authorization",
        )
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.generation_timeout = generation_timeout
        self.first_poll = FIRST_POLL if first_poll is None else first_poll
        self.max_poll = MAX_POLL if max_poll is None else max_poll

    # --- one call -----------------------------------------------------------
    def _call(
        self,
        method: str,
        url: str,
        key: str,
        body: bytes | json_parts.Parts | None,
        budget: float,
        observe: Observe | None = None,
    ) -> tuple[int, requests.structures.CaseInsensitiveDict[str], Any]:
        headers = {"Authorization": f"Key {key}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        timeout = (self.connect_timeout, max(0.05, min(self.read_timeout, budget)))
        # Parts are sent one after another, so the jobs of one edit share its images.
        with self.relay.open(method, url, headers, body, timeout) as response:  # type: ignore[arg-type]
            if observe is not None:
                observe(method, url, response.status_code, response.headers)
            raw = response.raw.read(MAX_RESULT_BYTES + 1, decode_content=True)
            if len(raw) > MAX_RESULT_BYTES:
                raise errors.fal_error(response.status_code, "the answer is too large")
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return response.status_code, response.headers, parsed

    # --- a whole request -----------------------------------------------------
    def run_all(
        self, endpoint: str, app: str, inputs: Sequence[dict[str, Any]], progress: Progress
    ) -> list[dict[str, Any]]:
        """Each input's result, in order; the first failure cancels the other jobs."""
        deadline = time.monotonic() + self.generation_timeout
        if len(inputs) == 1:
            return [self.run(endpoint, app, inputs[0], deadline, progress)]
        with ThreadPoolExecutor(max_workers=len(inputs), thread_name_prefix="fal-job") as pool:
            futures = [
                pool.submit(self.run, endpoint, app, job, deadline, progress) for job in inputs
            ]
            wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.done() and f.exception() is not None for f in futures):
                progress.abandon.set()
        failures = [f.exception() for f in futures if f.exception() is not None]
        real = [e for e in failures if not isinstance(e, _Abandoned)]
        if failures:
            raise (real or failures)[0]
        return [f.result() for f in futures]

    def run(
        self,
        endpoint: str,
        app: str,
        payload: dict[str, Any],
        deadline: float,
        progress: Progress,
    ) -> dict[str, Any]:
        job = self._submit(endpoint, app, json_parts.dumps(payload), deadline, progress)
        try:
            failed = self._await(job, deadline, progress)
        except BaseException:
            # Whatever went wrong, fal must stop working on a job nobody will receive.
            self.cancel(job, progress.observe)
            raise
        if failed is not None:
            raise failed  # fal ended the job itself: nothing to cancel
        return self._result(job, deadline, progress.observe)

    # --- submit --------------------------------------------------------------
    def _submit(
        self,
        endpoint: str,
        app: str,
        body: bytes | json_parts.Parts,
        deadline: float,
        progress: Progress,
    ) -> _Job:
        """The job fal accepted, trying each key in turn while fal refuses the key itself.

        A key that fal rejects (401, 403) is benched and a rate-limited one
        (429) skipped; any other answer ends the loop, since another key
        would meet the same answer.
        """
        rate_limited, retry_after = False, DEFAULT_RETRY_AFTER
        keys = progress.keys or self.keys
        for key in keys.for_job():
            if progress.abandon.is_set():
                raise _Abandoned()
            status, headers, answer = self._send_submit(endpoint, key, body, deadline, progress)
            if status in (401, 403):
                keys.bench(key, status)
                continue
            if status == 429:
                rate_limited = True
                retry_after = _retry_after(headers, retry_after)
                logger.info("fal rate-limited key %s; trying the next one", fingerprint(key))
                continue
            return self._accepted(endpoint, app, key, status, answer, progress)
        if rate_limited:
            raise errors.fal_rate_limited(retry_after)
        raise errors.fal_keys_refused()

    def _send_submit(
        self,
        endpoint: str,
        key: str,
        body: bytes | json_parts.Parts,
        deadline: float,
        progress: Progress,
    ) -> tuple[int, requests.structures.CaseInsensitiveDict[str], Any]:
        """fal's answer to one submit; a failure that may have reached fal counts as submitted."""
        try:
            return self._call(
                "POST", QUEUE + endpoint, key, body, deadline - time.monotonic(), progress.observe
            )
        except errors.OpenAIError as exc:
            # Raised reading fal's answer (too large): the submit was sent.
            raise self._ambiguous(progress, exc) from None
        except ProxyError:
            raise  # refused before sending
        except Exception as exc:
            if never_sent(exc):
                # Nothing reached fal: safe for the client to retry.
                logger.warning("fal unreachable at submit (%s)", type(exc).__name__)
                raise errors.fal_unreachable() from None
            logger.warning("fal's answer to a submit failed (%s)", type(exc).__name__)
            raise self._ambiguous(progress, answer_for(exc)) from None

    def _accepted(
        self, endpoint: str, app: str, key: str, status: int, answer: Any, progress: Progress
    ) -> _Job:
        """The job a submit's answer names, or the refusal that answer means.

        A 4xx is fal refusing the input, so nothing was queued; a 5xx or an
        answer without a request id may hide a queued job, so it is paid for.
        """
        if status == 422:
            raise errors.fal_rejected_input(fal_message(answer, "the input was rejected"))
        if 400 <= status < 500:
            raise errors.invalid_request(f"fal refused the request: {fal_message(answer)}")
        if not 200 <= status < 300:
            raise self._ambiguous(progress, errors.fal_error(status, fal_message(answer)))
        job = self._job(app, key, answer)
        if job is None:
            error = errors.fal_error(status, "the submit's answer has no request id")
            raise self._ambiguous(progress, error)
        progress.submitted = True
        logger.info("submitted %s as %s with key %s", endpoint, job.request_id, fingerprint(key))
        return job

    def _ambiguous(self, progress: Progress, error: errors.OpenAIError) -> errors.OpenAIError:
        # fal may have queued the job before failing to say so: treat it as paid for.
        progress.submitted = True
        logger.warning("fal submit failed: %s", error.message)
        return error

    def _job(self, app: str, key: str, answer: Any) -> _Job | None:
        if not isinstance(answer, dict):
            return None
        request_id = answer.get("request_id")
        if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
            return None
        base = f"{QUEUE}{app}/requests/{request_id}"

        def vetted(name: str, built: str) -> str:
            url = answer.get(name)
            suffix = built[len(base) :]
            if (
                isinstance(url, str)
                and url.startswith(f"{QUEUE}{app}/")
                and url.endswith(f"/requests/{request_id}{suffix}")
                and _canonical(url)
            ):
                return url
            # Another app, another host or another job: use the URL fal's client would build.
            return built

        return _Job(
            key=key,
            request_id=request_id,
            status_url=vetted("status_url", f"{base}/status"),
            response_url=vetted("response_url", base),
            cancel_url=vetted("cancel_url", f"{base}/cancel"),
        )

    # --- follow --------------------------------------------------------------
    def _await(self, job: _Job, deadline: float, progress: Progress) -> errors.OpenAIError | None:
        """Poll until fal says the job is over: ``None`` if it completed, else why it failed.

        Anything else raises, and the caller cancels the job.
        """
        delay, failures = self.first_poll, 0
        while True:
            self._wait_to_poll(delay, deadline, progress)
            delay = min(delay * 2, self.max_poll)
            if time.monotonic() >= deadline:
                continue
            try:
                status, _, answer = self._call(
                    "GET",
                    job.status_url,
                    job.key,
                    None,
                    deadline - time.monotonic(),
                    progress.observe,
                )
            except errors.OpenAIError as exc:
                failures += 1
                _poll_failed(exc, failures)
                continue
            except ProxyError:
                raise
            except Exception as exc:
                failures += 1
                _poll_failed(exc, failures)
                continue
            if status >= 500 or status == 429:
                failures += 1
                if failures >= _TRANSIENT_POLL_FAILURES:
                    raise errors.fal_error(status, fal_message(answer))
                continue
            if not 200 <= status < 300:
                raise errors.fal_error(status, fal_message(answer))
            failures = 0
            state = answer.get("status") if isinstance(answer, dict) else None
            if state == "COMPLETED":
                return None
            if state in ("FAILED", "ERROR", "CANCELLED"):
                return errors.generation_failed(
                    fal_message({"detail": answer.get("error")}, state.lower())
                )

    def _wait_to_poll(self, delay: float, deadline: float, progress: Progress) -> None:
        """Sleep before the next poll, unless the deadline, a sibling or the client ends the job.

        The client is asked before and after the sleep, so the jobs of a
        client that left during it are cancelled without one more poll.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise errors.generation_timeout(self.generation_timeout)
        progress.check_client()
        if progress.abandon.wait(min(delay, remaining)):
            raise progress.cause or _Abandoned()
        progress.check_client()
        if progress.abandon.is_set():
            raise progress.cause or _Abandoned()

    def _result(
        self, job: _Job, deadline: float, observe: Observe | None = None
    ) -> dict[str, Any]:
        try:
            status, _, answer = self._call(
                "GET",
                job.response_url,
                job.key,
                None,
                max(1.0, deadline - time.monotonic()),
                observe,
            )
        except (ProxyError, errors.OpenAIError):
            raise
        except Exception as exc:
            # The job is over, but its answer was lost: make sure fal stops all the same.
            logger.warning("fal result fetch failed (%s)", type(exc).__name__)
            self.cancel(job, observe)
            raise answer_for(exc) from None
        if 200 <= status < 300 and isinstance(answer, dict):
            return answer
        if status == 422:
            raise errors.fal_rejected_input(fal_message(answer, "the input was rejected"))
        raise errors.generation_failed(fal_message(answer, f"fal answered {status}"))

    def cancel(self, job: _Job, observe: Observe | None = None) -> None:
        """Ask fal to stop the job; best effort, since the answer changes nothing here."""
        try:
            status, _, _ = self._call(
                "PUT", job.cancel_url, job.key, None, CANCEL_TIMEOUT, observe
            )
            logger.info("cancelled fal job %s (%d)", job.request_id, status)
        except Exception as exc:
            logger.warning("could not cancel fal job %s (%s)", job.request_id, type(exc).__name__)

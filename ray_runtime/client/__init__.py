"""Python clients of the ray_runtime API façade; they need httpx and pydantic, never Ray or FastAPI.

    from ray_runtime.client import RuntimeClient

    with RuntimeClient("http://127.0.0.1:8080", api_key="rrk_...") as client:
        job = client.submit_plugin("wordcount", "count", {"top": 3})
        for line in client.tail_job_logs(job.submission_id):
            print(line)
        print(client.wait_job(job.submission_id).run.result)

Every failure is a :class:`ClientError` (the one error tree of :mod:`ray_runtime.errors`) with the server's
``code`` and the HTTP ``status_code``; :class:`UnavailableError` when the façade cannot be reached.
"""

from ray_runtime.client._clients import AsyncRuntimeClient, RuntimeClient
from ray_runtime.client._http import ClientConfig
from ray_runtime.client._session import AsyncSession, Session
from ray_runtime.client._socket import AgentSocket, AsyncAgentSocket, AsyncResponseIterator, ResponseIterator
from ray_runtime.client._tasks import TaskClient
from ray_runtime.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    HostLostError,
    InvocationError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SessionBusyError,
    SessionClosedError,
    SessionNotFoundError,
    SessionPausedError,
    StreamLimitError,
    TemplateNotFoundError,
    TimeoutError,
    UnavailableError,
    ValidationError,
)
from ray_runtime.errors import RayRuntimeError as ClientError
from ray_runtime.models.agent import End, Event
from ray_runtime.models.api import JobInfo, JobStatus, StreamLimits
from ray_runtime.models.sessions import Invocation, SessionStatus, Template, TurnRequest

__all__ = [
    "AgentSocket",
    "AsyncAgentSocket",
    "AsyncResponseIterator",
    "AsyncRuntimeClient",
    "AsyncSession",
    "AuthenticationError",
    "BadRequestError",
    "ClientConfig",
    "ClientError",
    "ConflictError",
    "End",
    "Event",
    "HostLostError",
    "Invocation",
    "InvocationError",
    "JobInfo",
    "JobStatus",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseIterator",
    "RuntimeClient",
    "ServerError",
    "Session",
    "SessionBusyError",
    "SessionClosedError",
    "SessionNotFoundError",
    "SessionPausedError",
    "SessionStatus",
    "StreamLimitError",
    "StreamLimits",
    "TaskClient",
    "Template",
    "TemplateNotFoundError",
    "TimeoutError",
    "TurnRequest",
    "UnavailableError",
    "ValidationError",
]

"""Agent sessions: stateful agents on Ray that are created from a template, take turns (a result, or a stream of
events), pause and resume with their memory intact, fork, and close.

What an agent's author needs is here::

    from ray_runtime.sessions import SessionContext, TurnContext, TurnRequest, ToolCall, ToolResult

The registry lives in the coordinator (``coordinator.sessions``); the running agents live in session hosts
(``sessions.host``); ``coord.sessions`` (``sessions.manager``) is what drivers call, and the façade serves it.
"""

from ray_runtime.models.agent import Custom, Progress, TextChunk, ToolCall, ToolResult
from ray_runtime.models.sessions import TurnRequest
from ray_runtime.sessions.template import SessionContext, TurnContext

__all__ = ["Custom", "Progress", "SessionContext", "TextChunk", "ToolCall", "ToolResult", "TurnContext", "TurnRequest"]

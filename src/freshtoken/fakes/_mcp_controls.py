"""The fake MCP server's control endpoints under ``/_freshtoken/``: the fault plan, sessions,
rotation, broadcasts and counters, for tests in any language."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from freshtoken._errors import ConfigError
from freshtoken._schema import parse
from freshtoken.fakes._fault_plan import FaultPlan
from freshtoken.fakes._faults import Fault
from freshtoken.fakes._mcp_base import ACTOR
from freshtoken.fakes._mcp_peer import Peer
from freshtoken.fakes._spec import Spec

__all__ = ["Controls"]


class _Notify(Spec):
    list_changed: str | None = None
    resource_updated: str | None = None


class Controls(Peer):
    """``GET``/``POST``/``DELETE faults``, ``POST drop-sessions``, ``POST rotate``,
    ``POST notify`` and ``GET stats``."""

    def _control_routes(self) -> None:
        self._controls = {
            ("GET", "faults"): self._list_faults,
            ("POST", "faults"): self._add_faults,
            ("DELETE", "faults"): self._clear_faults,
            ("POST", "drop-sessions"): self._drop_sessions,
            ("POST", "rotate"): self._rotate,
            ("POST", "notify"): self._notify,
            ("GET", "stats"): self._stats,
        }

    async def _control(self, request: web.Request) -> web.Response:
        name = request.match_info["action"]
        handler = self._controls.get((request.method, name))
        if handler is None:
            return web.json_response({"error": f"no control {request.method} {name}"}, status=404)
        return await handler(request)

    async def _body(self, request: web.Request) -> Any:
        source = f"{request.method} {request.path}"
        try:
            return json.loads(await request.read(), parse_constant=_not_json)
        except ValueError:
            raise ConfigError.at(source, "(body)", "not valid JSON") from None

    async def _add_faults(self, request: web.Request) -> web.Response:
        source = f"{request.method} {request.path}"
        try:
            data = await self._body(request)
            # One fault object, a list of them, or a whole plan.
            if isinstance(data, dict) and "action" in data:
                faults = [Fault.from_dict(data, source=source)]
            else:
                faults = list(FaultPlan.from_dict(data, source=source))
        except ConfigError as exc:
            return web.json_response(
                {"error": "invalid_fault", "error_description": str(exc)}, status=400
            )
        self.faults.extend(faults)
        return web.json_response({"added": len(faults), "faults": len(self.faults)})

    async def _list_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_dict())

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"faults": 0})

    async def _drop_sessions(self, request: web.Request) -> web.Response:
        count = len(self._sessions)
        self.drop_sessions()
        return web.json_response({"dropped": count})

    async def _rotate(self, request: web.Request) -> web.Response:
        if self._core is None:
            return web.json_response({"error": "auth is off: nothing to rotate"}, status=409)
        self._core.rotate()
        self.timeline.record(ACTOR, "fault", action="rotate", source="control")
        return web.json_response({"rotated": True})

    async def _notify(self, request: web.Request) -> web.Response:
        source = f"{request.method} {request.path}"
        try:
            notify: _Notify = parse(_Notify, await self._body(request), source=source)
            if notify.list_changed is not None:
                if notify.list_changed not in ("tools", "resources", "prompts"):
                    raise ConfigError.at(
                        source, "list_changed", "must be tools, resources or prompts"
                    )
                self.notify_list_changed(notify.list_changed)  # type: ignore[arg-type]
            if notify.resource_updated is not None:
                self.notify_resource_updated(notify.resource_updated)
        except ConfigError as exc:
            return web.json_response(
                {"error": "invalid_request", "error_description": str(exc)}, status=400
            )
        return web.json_response({"notified": True})

    async def _stats(self, request: web.Request) -> web.Response:
        # Counters kept as they go and sizes of bounded structures: never a scan of history.
        return web.json_response(
            {
                "sessions": len(self._sessions),
                # Bounded by max_sessions x (max_streams_per_session + those still running).
                "streams": sum(len(session.streams) for session in self._sessions.values()),
                "requests": self._requests,
                "running": len(self._running),
                "timeline_events": len(self.timeline),
                "faults": [state.to_dict() for state in self.faults.states],
            }
        )


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")

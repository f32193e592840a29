"""A downstream project's own small MCP client (sync and async, on httpx), written into the
pytester projects as ``mcp_calls.py``: what a suite would test with the fixtures.

``Session`` sends whatever bearer ``token`` holds; ``Refreshing`` is a client that refreshes
its own token at the token endpoint on a 401 (what ``freshtoken_credentials`` is for), and
``Baked`` one that keeps the bearer it was built with (the seed bug).
"""

SOURCE = '''
import json

import httpx

ACCEPT = "application/json, text/event-stream"


def _message(response):
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        messages = [json.loads(d) for d in data if d]
        return messages[-1] if messages else None
    return response.json() if response.content else None


def _initialize_body():
    return {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "downstream", "version": "1"}},
    }


def _call_body(n, tool, arguments):
    return {"jsonrpc": "2.0", "id": n, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}


class Session:
    """Initialize once, then tools/call; ``token`` (if any) is the bearer sent."""

    def __init__(self, url, token=None):
        self.url, self.token, self.session_id, self.calls = url, token, None, 0

    def headers(self):
        headers = {"Accept": ACCEPT}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
            headers["MCP-Protocol-Version"] = "2025-11-25"
        return headers

    def after_initialize(self, response):
        assert response.status_code == 200, response.text
        self.session_id = response.headers.get("mcp-session-id")
        return {"jsonrpc": "2.0", "method": "notifications/initialized"}

    def outcome(self, response):
        message = _message(response) if response.status_code == 200 else None
        return response.status_code, (message or {}).get("result")

    # -- sync --------------------------------------------------------------------------
    def initialize(self, http):
        response = http.post(self.url, headers=self.headers(), json=_initialize_body())
        notification = self.after_initialize(response)
        assert http.post(self.url, headers=self.headers(), json=notification).status_code == 202

    def call(self, http, tool="echo", arguments=None):
        self.calls += 1
        body = _call_body(self.calls, tool, arguments or {"text": "hi"})
        return self.outcome(http.post(self.url, headers=self.headers(), json=body))

    # -- async -------------------------------------------------------------------------
    async def ainitialize(self, http):
        response = await http.post(self.url, headers=self.headers(), json=_initialize_body())
        notification = self.after_initialize(response)
        sent = await http.post(self.url, headers=self.headers(), json=notification)
        assert sent.status_code == 202

    async def acall(self, http, tool="echo", arguments=None):
        self.calls += 1
        body = _call_body(self.calls, tool, arguments or {"text": "hi"})
        return self.outcome(await http.post(self.url, headers=self.headers(), json=body))


class Refreshing(Session):
    """Holds direct credentials and refreshes (once) when the server says 401."""

    def __init__(self, credentials):
        super().__init__(credentials.mcp_url, credentials.access_token)
        self.credentials = credentials
        self.refresh_token = credentials.refresh_token

    def adopt(self, response):
        assert response.status_code == 200, response.text
        tokens = response.json()
        self.token = tokens["access_token"]
        self.refresh_token = tokens.get("refresh_token", self.refresh_token)

    def form(self):
        return {"grant_type": "refresh_token", "refresh_token": self.refresh_token,
                "resource": self.credentials.resource}

    def call(self, http, tool="echo", arguments=None):
        status, result = super().call(http, tool, arguments)
        if status == 401:
            c = self.credentials
            self.adopt(http.post(c.token_endpoint, data=self.form(),
                                 auth=(c.client_id, c.client_secret)))
            status, result = super().call(http, tool, arguments)
        return status, result

    async def acall(self, http, tool="echo", arguments=None):
        status, result = await super().acall(http, tool, arguments)
        if status == 401:
            c = self.credentials
            self.adopt(await http.post(c.token_endpoint, data=self.form(),
                                       auth=(c.client_id, c.client_secret)))
            status, result = await super().acall(http, tool, arguments)
        return status, result


class Baked(Session):
    """Builds its bearer once from the credentials and never refreshes it."""

    def __init__(self, credentials):
        super().__init__(credentials.mcp_url, credentials.access_token)
'''

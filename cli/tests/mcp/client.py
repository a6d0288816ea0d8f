"""A real MCP client (the official `mcp` Python SDK) for nix-infra's tests.

Reads a JSON script on stdin:
  {"server": {"command": "...", "args": [...]}          # stdio: spawn it
          or {"url": "http://127.0.0.1:PORT/mcp", "token": "..."},
   "calls": [{"op": "info"}, {"op": "tools"}, {"op": "resources"},
             {"op": "read", "uri": "..."},
             {"op": "call", "tool": "...", "args": {...}}]}
and prints one JSON array on stdout: each call's answer, in order. A call
the server answers with a protocol error gives {"protocol_error": "..."}.
The server's stderr goes to this process's stderr. This file asserts
nothing: the Rust test reads the answers.
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


async def run_calls(session, calls):
    out = []
    init = await session.initialize()
    for c in calls:
        op = c["op"]
        try:
            if op == "info":
                out.append({"name": init.server_info.name, "version": init.server_info.version,
                            "instructions": init.instructions})
            elif op == "tools":
                tools = await session.list_tools()
                out.append([{"name": t.name, "input_schema": t.input_schema,
                             "annotations": t.annotations.model_dump(exclude_none=True) if t.annotations else None}
                            for t in tools.tools])
            elif op == "resources":
                res = await session.list_resources()
                out.append([{"uri": str(r.uri), "name": r.name, "mime_type": r.mime_type} for r in res.resources])
            elif op == "read":
                res = await session.read_resource(c["uri"])
                out.append([{"uri": str(x.uri), "text": getattr(x, "text", None)} for x in res.contents])
            elif op == "call":
                res = await session.call_tool(c["tool"], c.get("args", {}))
                text = "\n".join(b.text for b in res.content if getattr(b, "type", "") == "text")
                out.append({"is_error": bool(res.is_error), "text": text, "structured": res.structured_content})
            else:
                raise ValueError(f"unknown op {op}")
        except MCPError as e:
            out.append({"protocol_error": str(e)})
    return out


async def main():
    script = json.load(sys.stdin)
    server = script["server"]
    if "url" in server:
        headers = {"Authorization": f"Bearer {server['token']}"} if server.get("token") else {}
        async with httpx2.AsyncClient(headers=headers, timeout=600) as http:
            async with streamable_http_client(server["url"], http_client=http) as (r, w, *_):
                async with ClientSession(r, w) as s:
                    out = await run_calls(s, script["calls"])
    else:
        params = StdioServerParameters(command=server["command"], args=server["args"], env=dict(os.environ))
        async with stdio_client(params) as (r, w):
            async with ClientSession(r, w) as s:
                out = await run_calls(s, script["calls"])
    json.dump(out, sys.stdout)


asyncio.run(main())

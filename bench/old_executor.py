#!/usr/bin/python3
"""Stand-in for the old Python healing executor, for scripts/bench only.

It reproduces what the old service did per request, in the same order and
with the same machinery, so that its latency and memory are a fair "before"
figure:

  * one long-running asyncio process (asyncio.start_unix_server), here handed
    its Accept=no socket by systemd instead of binding it itself;
  * a single read of up to 64 KiB, json.loads, a dataclass built from the
    object (an extra field is a TypeError -> "Invalid request format");
  * HMAC-SHA256 over "{id}:{action}:{timestamp}" with the secret from
    LUMINOUS_HEALING_SECRET, compared with hmac.compare_digest;
  * the allow-list, then a 10-per-300 s sliding window per action;
  * the audit: a log line to stderr (the journal, via the service's stdout
    stream) before and after the action, and one JSON line appended to an
    audit file, all BEFORE the reply is written, as the old code did;
  * the reply: json.dumps of the five-field response dataclass.

Differences, on purpose:
  * It answers `status` (the old service had no such action) so that both
    executors can be compared on a request that runs nothing.
  * Of the real actions it implements only adjust_swappiness, the one the
    bench forwards, and in the cheapest way Python has: one write to
    /proc/sys/vm/swappiness from the process itself (no subprocess, no
    sysctl), so the full-path comparison never makes the old side slower
    than it was.
  * The rate-limit window is a deque per action. The old code rebuilt a dict
    of every recorded request on each call, which cost nothing at its limit
    of 10 but would grow with every request once the bench raises the limit
    (BENCH_RATE_LIMIT); that growth would be an artefact of the bench.
  * No freshness check, replay cache or peer credentials: the old service
    had none, and their absence is part of what is being compared.
"""
import asyncio
import collections
import hashlib
import hmac
import json
import logging
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Dict, Optional

logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s",
                    handlers=[logging.StreamHandler()])
log = logging.getLogger("luminous-healing-executor")

ACTIONS = ("restart_service", "set_cpu_governor", "clear_system_cache",
           "rollback_generation", "kill_process", "adjust_swappiness",
           "restart_network", "clean_nix_store", "status")
WINDOW_SECS = 300
LIMIT = int(os.environ.get("BENCH_RATE_LIMIT", "10"))
AUDIT_FILE = os.environ.get("BENCH_AUDIT_FILE", "/var/log/luminous-healing-audit.json")


@dataclass
class HealingRequest:
    id: str
    action: str
    parameters: Dict[str, Any]
    timestamp: str
    signature: Optional[str] = None


@dataclass
class HealingResponse:
    request_id: str
    success: bool
    output: Optional[str] = None
    error: Optional[str] = None
    duration_ms: int = 0


class Executor:
    def __init__(self, secret: str):
        self.secret = secret.encode()
        self.windows = {a: collections.deque() for a in ACTIONS}

    def verify(self, r: HealingRequest) -> bool:
        if not r.signature:
            return False
        msg = f"{r.id}:{r.action}:{r.timestamp}".encode()
        return hmac.compare_digest(r.signature, hmac.new(self.secret, msg, hashlib.sha256).hexdigest())

    def expire(self, action: str) -> collections.deque:
        q, now = self.windows[action], time.monotonic()
        while q and now - q[0] >= WINDOW_SECS:
            q.popleft()
        return q

    def admit(self, action: str) -> bool:
        q = self.expire(action)
        if len(q) >= LIMIT:
            log.warning("Rate limit exceeded for %s", action)
            return False
        q.append(time.monotonic())
        return True

    def status(self) -> Dict[str, Any]:
        left = {a: max(0, LIMIT - len(self.expire(a))) for a in self.windows}
        return {"success": True, "output": json.dumps({"version": "old-standin", "actions": {
            a: {"remaining": n, "limit": LIMIT, "window_secs": WINDOW_SECS} for a, n in left.items()}})}

    def adjust_swappiness(self, params: Dict[str, Any]) -> Dict[str, Any]:
        value = params.get("value")
        if not isinstance(value, int) or not 0 <= value <= 100:
            return {"success": False, "error": "value must be 0-100"}
        try:
            with open("/proc/sys/vm/swappiness", "w") as f:
                f.write(str(value))
        except OSError as e:
            return {"success": False, "error": str(e)}
        return {"success": True, "output": f"vm.swappiness = {value}"}

    def audit(self, r: HealingRequest, resp: HealingResponse):
        entry = {"timestamp": datetime.now().isoformat(), "request_id": r.id, "action": r.action,
                 "parameters": r.parameters, "success": resp.success,
                 "duration_ms": resp.duration_ms, "error": resp.error}
        if resp.success:
            log.info("Executed %s (request %s)", r.action, r.id)
        else:
            log.error("Failed %s: %s", r.action, resp.error)
        try:
            with open(AUDIT_FILE, "a") as f:
                f.write(json.dumps(entry) + "\n")
        except OSError as e:
            log.error("Failed to write audit log: %s", e)

    async def execute(self, r: HealingRequest) -> HealingResponse:
        start = datetime.now()
        if not self.verify(r):
            return HealingResponse(r.id, False, error="Invalid signature")
        if r.action not in self.windows:
            return HealingResponse(r.id, False, error=f"Action {r.action} not allowed")
        if not self.admit(r.action):
            return HealingResponse(r.id, False, error="Rate limit exceeded")
        log.info("Executing %s (request %s)", r.action, r.id)
        if r.action == "status":
            result = self.status()
        elif r.action == "adjust_swappiness":
            result = self.adjust_swappiness(r.parameters)
        else:
            result = {"success": False, "error": "not in the stand-in"}
        resp = HealingResponse(r.id, result.get("success", False), result.get("output"), result.get("error"),
                               int((datetime.now() - start).total_seconds() * 1000))
        self.audit(r, resp)
        return resp


async def main():
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        sys.exit("old_executor.py: must be socket-activated (Accept=no, one socket)")
    secret = os.environ.get("LUMINOUS_HEALING_SECRET")
    if not secret:
        sys.exit("old_executor.py: LUMINOUS_HEALING_SECRET is not set")
    ex = Executor(secret)

    async def client(reader, writer):
        try:
            data = await reader.read(65536)
            if not data:
                return
            try:
                req = HealingRequest(**json.loads(data.decode()))
            except (ValueError, TypeError) as e:
                log.error("Invalid request format: %s", e)
                resp = HealingResponse("unknown", False, error="Invalid request format")
            else:
                resp = await ex.execute(req)
            writer.write(json.dumps(asdict(resp)).encode())
            await writer.drain()
        except Exception as e:  # the old service logged and carried on
            log.error("Error handling client: %s", e)
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_unix_server(client, sock=socket.socket(fileno=3))
    log.info("Listening (socket-activated)")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

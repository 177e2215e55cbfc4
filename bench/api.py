"""API read throughput: GET /api/jobs/{id}/ with token auth vs a bare Django JSON view.

Production serving (common.WEB_ENV, README "Production settings"): daphne with DATABASE_POOL=1, one
process per core behind the load balancer; here WEB_PROCS daphne processes on their own ports and the
client connections spread over them (what the balancer does). Baseline: one default daphne serving
bench/bare_urls.py (no DRF, no auth, CONN_MAX_AGE=0, no pool). Load: CLIENT_PROCS processes of
bench.clients `http` mode with keep-alive connections on loopback; responses counted after a warm-up.
"""
from __future__ import annotations

from typing import Any

from . import common

CLIENT_PROCS, CONNECTIONS_PER_PROC = 2, 16


def load(ports: list[int], path: str, headers: dict[str, str], duration: float) -> dict[str, Any]:
    clients = common.Clients()
    try:
        clients.start("http", [{"ports": ports, "path": path, "headers": headers, "connections": CONNECTIONS_PER_PROC,
                                "warmup_s": 1.0 if duration < 5 else 2.0, "duration_s": duration} for _ in range(CLIENT_PROCS)])
        clients.wait_ready(60)
        clients.go()
        results = clients.results(duration + 60)
    finally:
        clients.stop()
    ok = sum(r["ok"] for r in results)
    return {"rps": round(ok / duration, 1), "non_200": sum(r["bad"] for r in results),
            "errors": sum(r["errors"] for r in results),
            "p50_ms": round(max((r["p50_ms"] or 0) for r in results), 1)}


def run(env: common.BenchEnv, quick: bool) -> dict[str, Any]:
    from jobs import services

    duration = 3.0 if quick else 20.0
    user, token = common.make_user_with_token()
    project = common.make_project(user)
    with common.dispatching(None):
        job = services.job_create(project=project, job_type="image_generation")
    out: dict[str, Any] = {"api_web_procs": common.WEB_PROCS, "api_load_connections": CLIENT_PROCS * CONNECTIONS_PER_PROC}

    group = common.process_group()
    try:
        port = group.start_daphne("bare-daphne", app="bench.bare_asgi:application", plain=True,
                                  DJANGO_SETTINGS_MODULE="bench.bare_settings", DATABASE_POOL="0")
        bare = load([port], f"/bare/{job.pk}/", {}, duration)
        group.stop_all()
        out.update(api_bare_rps=bare["rps"], api_bare_p50_ms=bare["p50_ms"], api_bare_errors=bare["non_200"] + bare["errors"])

        group = common.process_group()
        ports = [group.start_daphne(f"api-daphne-{i}", **common.WEB_ENV) for i in range(common.WEB_PROCS)]
        api = load(ports, f"/api/jobs/{job.pk}/", {"Authorization": f"Token {token}", "Accept": "application/json"},
                   duration)
        out.update(api_get_job_rps=api["rps"], api_get_job_p50_ms=api["p50_ms"],
                   api_get_job_errors=api["non_200"] + api["errors"])
        out["api_vs_bare_ratio"] = round(out["api_get_job_rps"] / max(out["api_bare_rps"], 0.1), 2)
    finally:
        group.stop_all()
    return out

"""docker-compose.yml, checked without a Docker engine: every service runs a real `fervi` subcommand
(or Redis), every build context and Dockerfile exists, and every FERVI service waits for a healthy Redis."""

from __future__ import annotations

import shlex

import yaml

from fervi.app.cli import main

from .conftest import REPO


def _fervi_commands(service: dict) -> list[list[str]]:
    entry = service.get("entrypoint")
    if entry and entry[:2] == ["sh", "-c"]:
        return [shlex.split(part)[1:] for part in entry[2].replace("exec ", "").split("&&")]
    return [service.get("command", [])]


def test_compose_services_are_real_fervi_commands():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "worker", "tracker", "dashboard", "rq-worker", "cameras"} <= set(services)
    for name, service in services.items():
        if name == "redis":
            assert service["image"].startswith("redis:") and "healthcheck" in service
            continue
        build = service.get("build", ".")
        assert (REPO / build / "Dockerfile").is_file()
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "healthcheck" in service
        for args in _fervi_commands(service):
            assert args and args[0] in main.commands, (name, args)
            ctx = main.make_context("fervi", list(args), resilient_parsing=True)
            assert ctx is not None
    # the dashboard listens on all the container's interfaces: it must have a token, or fervi refuses to start
    assert "FERVI_DASHBOARD_TOKEN" in services["dashboard"]["environment"]
    assert "FERVI_REDIS_URL" in services["dashboard"]["environment"]
    dockerfile = (REPO / "Dockerfile").read_text()
    import fervi

    for folder in ("fervi", *fervi.STAGES):  # every folder that `pip install .` maps into the fervi namespace
        assert f"COPY {folder} {folder}" in dockerfile

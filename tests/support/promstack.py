"""Real Prometheus and Alertmanager (Debian packages) on free ports, for end-to-end alert tests.

`MetricsSource` is a tiny exporter the test controls (the "cluster's" health); Prometheus
scrapes it every second, a rule fires when the value is 0, and Alertmanager posts the group
to the intake with the bearer token. Flip the value to 1 and the alert resolves.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.support.env import free_port


class MetricsSource:
    """Serves `/metrics` with one gauge per (deployment) the test sets."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], float] = {}
        self.port = free_port()
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                lines = ["# TYPE demo_deployment_healthy gauge"]
                for (ns, dep), v in sorted(source.values.items()):
                    lines.append(f'demo_deployment_healthy{{namespace="{ns}",deployment="{dep}"}} {v}')
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> MetricsSource:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


RULES = """
groups:
  - name: demo
    interval: 1s
    rules:
      - alert: DemoDeploymentUnhealthy
        expr: demo_deployment_healthy == 0
        for: 0s
        labels:
          severity: warning
        annotations:
          summary: "Deployment {{ $labels.namespace }}/{{ $labels.deployment }} is unhealthy"
          description: "The demo health gauge of {{ $labels.deployment }} reports 0."
"""


def _wait_http(url: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not become ready within {within}s")


@contextlib.contextmanager
def alerting_stack(
    tmp: Path,
    metrics_port: int,
    intake_url: str,
    token: str,
    *,
    extra_rules: str = "",
    extra_scrape_configs: str = "",
    prom_port: int | None = None,
) -> Iterator[dict[str, int]]:
    """Start Alertmanager (webhook → intake) and Prometheus (scraping `metrics_port`).

    `extra_rules`: more rules of the `demo` group (YAML list items, indented as in `RULES`);
    `extra_scrape_configs`: more scrape jobs (YAML list items at two spaces); `prom_port`: the
    port Prometheus listens on (default: a free one), for a URL that must be known first."""
    prom_bin = shutil.which("prometheus")
    am_bin = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not prom_bin or not am_bin:
        raise RuntimeError("prometheus and prometheus-alertmanager are needed: `make system-deps` installs them")
    tmp.mkdir(parents=True, exist_ok=True)
    am_port, am_cluster, prom_port = free_port(), free_port(), prom_port or free_port()
    (tmp / "token").write_text(token)
    (tmp / "alertmanager.yml").write_text(
        f"""
route:
  receiver: agentic
  group_by: [alertname, namespace]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: agentic
    webhook_configs:
      - url: {intake_url}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: {tmp / "token"}
"""
    )
    (tmp / "rules.yml").write_text(RULES + extra_rules)
    (tmp / "prometheus.yml").write_text(
        f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{tmp / "rules.yml"}]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{am_port}"]
scrape_configs:
  - job_name: demo
    static_configs:
      - targets: ["127.0.0.1:{metrics_port}"]
{extra_scrape_configs}"""
    )
    logs = tmp / "logs"
    logs.mkdir(exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (logs / "alertmanager.log").open("wb") as am_log:
            procs.append(
                subprocess.Popen(
                    [
                        am_bin,
                        f"--config.file={tmp / 'alertmanager.yml'}",
                        f"--storage.path={tmp / 'am-data'}",
                        f"--web.listen-address=127.0.0.1:{am_port}",
                        f"--cluster.listen-address=127.0.0.1:{am_cluster}",
                        f"--cluster.advertise-address=127.0.0.1:{am_cluster}",
                    ],
                    stdout=am_log,
                    stderr=subprocess.STDOUT,
                )
            )
        with (logs / "prometheus.log").open("wb") as prom_log:
            procs.append(
                subprocess.Popen(
                    [
                        prom_bin,
                        f"--config.file={tmp / 'prometheus.yml'}",
                        f"--storage.tsdb.path={tmp / 'prom-data'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                        "--rules.alert.resend-delay=1s",
                    ],
                    stdout=prom_log,
                    stderr=subprocess.STDOUT,
                )
            )
        _wait_http(f"http://127.0.0.1:{am_port}/-/ready")
        _wait_http(f"http://127.0.0.1:{prom_port}/-/ready")
        yield {"alertmanager": am_port, "prometheus": prom_port}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


@contextlib.contextmanager
def secured_prometheus(tmp: Path, user: str, bcrypt_hash: str) -> Iterator[int]:
    """A Prometheus that wants basic auth (`--web.config.file` with `basic_auth_users`), scraping
    nothing; yields its port. It is up once `/-/ready` answers 401 (no credentials)."""
    prom_bin = shutil.which("prometheus")
    if not prom_bin:
        raise RuntimeError("prometheus is needed: `make system-deps` installs it")
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (tmp / "web.yml").write_text(f"basic_auth_users:\n  {user}: '{bcrypt_hash}'\n")
    (tmp / "prometheus.yml").write_text("global:\n  scrape_interval: 1s\n")
    with (tmp / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                prom_bin,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.config.file={tmp / 'web.yml'}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).status_code == 401:
                    break
            time.sleep(0.2)
        else:
            raise TimeoutError(f"the secured Prometheus on {port} did not start")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

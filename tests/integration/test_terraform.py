"""terraform/talos-cluster: formatting (`terraform fmt`), and the module's shape parsed from HCL.

No `terraform init/validate` here: they download the siderolabs/talos provider.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from typing import Any

import hcl2
import pytest

from tests.support.env import REPO

TERRAFORM = REPO / "terraform"
MODULE = TERRAFORM / "talos-cluster"


def _unquote(key: str) -> str:
    return key.strip('"')


def _text(value: Any) -> str:
    return str(value).strip('"') if value is not None else ""


@cache
def _blocks(kind: str) -> dict[str, dict[str, Any]]:
    """`variable`/`output` blocks of the module by name; `resource`/`data` by "type.name"."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(MODULE.glob("*.tf")):
        with path.open() as f:
            doc = hcl2.load(f)
        for block in doc.get(kind, []):
            for name, body in block.items():
                if kind in ("resource", "data"):
                    for inner, ibody in body.items():
                        found[f"{_unquote(name)}.{_unquote(inner)}"] = ibody
                else:
                    found[_unquote(name)] = body
    return found


def test_terraform_fmt_is_clean() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.fail("terraform is not installed: install Terraform >= 1.6 (https://developer.hashicorp.com/terraform)")
    res = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, f"terraform fmt -check found unformatted files:\n{res.stdout}\n{res.stderr}"


def test_every_variable_has_a_description_and_a_type() -> None:
    variables = _blocks("variable")
    assert {"node_address", "install_disk", "cluster_name", "talos_version"} <= set(variables)
    for name, body in variables.items():
        assert _text(body.get("description")), f"variable {name} has no description"
        assert _text(body.get("type")), f"variable {name} has no type"
    assert "default" not in variables["node_address"]  # the node's address must be given


def test_kubeconfig_and_talosconfig_outputs_are_sensitive() -> None:
    outputs = _blocks("output")
    for name in ("kubeconfig", "talosconfig"):
        assert name in outputs, f"output {name} is missing"
        assert outputs[name].get("sensitive") is True, f"output {name} is not sensitive"
        assert _text(outputs[name].get("description"))
    assert "talos_cluster_kubeconfig.this" in str(outputs["kubeconfig"]["value"])
    assert "talos_client_configuration.this" in str(outputs["talosconfig"]["value"])


def test_the_talos_provider_resources_form_the_bootstrap_chain() -> None:
    resources = _blocks("resource")
    data = _blocks("data")
    assert {
        "talos_machine_secrets.this",
        "talos_machine_configuration_apply.controlplane",
        "talos_machine_bootstrap.this",
        "talos_cluster_kubeconfig.this",
    } <= set(resources)
    assert {"talos_machine_configuration.controlplane", "talos_client_configuration.this"} <= set(data)
    config = data["talos_machine_configuration.controlplane"]
    assert _text(config["machine_type"]) == "controlplane"
    assert "config_patches" in config
    assert "talos_machine_configuration_apply" in str(resources["talos_machine_bootstrap.this"]["depends_on"])
    assert "talos_machine_bootstrap" in str(resources["talos_cluster_kubeconfig.this"]["depends_on"])
    versions = (MODULE / "versions.tf").read_text()
    assert 'source  = "siderolabs/talos"' in versions


def test_tfvars_example_sets_only_declared_variables() -> None:
    example = MODULE / "terraform.tfvars.example"
    with example.open() as f:
        values = hcl2.load(f)
    declared = set(_blocks("variable"))
    given = {k for k in values if not k.startswith("__")}
    assert "node_address" in given and "install_disk" in given
    assert given <= declared, given - declared


def test_install_doc_exists() -> None:
    doc = (REPO / "docs" / "talos-install.md").read_text()
    for needle in ("ISO", "USB", "terraform apply", "talosctl", "terraform.tfvars"):
        assert needle in doc, needle


def test_module_files_exist() -> None:
    names = {p.name for p in MODULE.iterdir()}
    assert {"versions.tf", "variables.tf", "main.tf", "outputs.tf", "terraform.tfvars.example"} <= names

"""Runbook file parsing and documentation chunking (`activities.knowledge.markdown`)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from activities.knowledge.chunks import chunk_markdown, chunk_text, load_docs
from activities.knowledge.markdown import (
    RunbookFormatError,
    iter_markdown_files,
    load_runbooks,
    looks_like_alert_name,
    parse_runbook_file,
    runbook_id_for,
)
from agentic_core.models import AutomationLevel, Runbook
from tests.support.env import RUNBOOKS_CORPUS


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


FULL = """---
id: apps/restart-crashlooping
title: Restart a crash-looping deployment
match:
  - alertname=KubePodCrashLooping
  - namespace=~prod-.*
actions:
  - tool: kubernetes.restart_deployment
    arguments:
      namespace: "{{ labels.namespace }}"
      name: "{{ labels.deployment }}"
automation_level: prompted
owner: team-platform
---
# Restart it

Roll the deployment when its pods keep restarting.
"""


def test_front_matter_with_all_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "apps/restart.md", FULL)
    rb = parse_runbook_file(path, tmp_path)
    assert rb.id == "apps/restart-crashlooping"
    assert rb.title == "Restart a crash-looping deployment"
    assert [str(m) for m in rb.match] == ["alertname=KubePodCrashLooping", "namespace=~prod-.*"]
    assert len(rb.actions) == 1
    assert rb.actions[0].tool == "kubernetes.restart_deployment"
    assert rb.actions[0].arguments == {"namespace": "{{ labels.namespace }}", "name": "{{ labels.deployment }}"}
    assert rb.automation_level == AutomationLevel.PROMPTED
    assert rb.body.startswith("# Restart it")
    assert "---" not in rb.body and "owner" not in rb.body  # front matter is not part of the body
    assert rb.source == "apps/restart.md"
    assert rb.content_hash == rb.compute_hash() and len(rb.content_hash) == 64


def test_allow_namespaces_lists_the_protected_namespaces_the_runbook_may_change(tmp_path: Path) -> None:
    text = FULL.replace("automation_level: prompted\n", "automation_level: prompted\nallow_namespaces: [kube-system]\n")
    rb = parse_runbook_file(write(tmp_path, "apps/coredns.md", text), tmp_path)
    assert rb.allow_namespaces == ["kube-system"]
    plain = parse_runbook_file(write(tmp_path, "apps/restart.md", FULL), tmp_path)
    assert plain.allow_namespaces == []
    # Allowing a namespace is a change of the runbook (re-imported, re-indexed); a runbook without
    # the key keeps the hash it had before the key existed.
    assert rb.content_hash != plain.content_hash
    assert plain.content_hash == plain.model_copy(update={"allow_namespaces": []}).compute_hash()
    one = parse_runbook_file(write(tmp_path, "one.md", "---\nallow_namespaces: kube-system\n---\nbody\n"), tmp_path)
    assert one.allow_namespaces == ["kube-system"]


EVIDENCE = """evidence:
  - tool: get_pod_logs
    arguments:
      namespace: "{{ labels.namespace }}"
      pod: "{{ labels.pod }}"
      previous: true
  - tool: get_events
    arguments: {namespace: "{{ labels.namespace }}", involved_object: "{{ labels.pod }}"}
  - tool: prom_query
    arguments:
      query: 'container_memory_working_set_bytes{namespace="{{ labels.namespace }}", pod="{{ labels.pod }}"}'
"""


def test_evidence_lists_read_only_calls_with_templates(tmp_path: Path) -> None:
    text = FULL.replace("automation_level: prompted\n", "automation_level: prompted\n" + EVIDENCE)
    rb = parse_runbook_file(write(tmp_path, "apps/crashloop.md", text), tmp_path)
    assert [(c.tool, c.arguments) for c in rb.evidence] == [
        ("get_pod_logs", {"namespace": "{{ labels.namespace }}", "pod": "{{ labels.pod }}", "previous": True}),
        ("get_events", {"namespace": "{{ labels.namespace }}", "involved_object": "{{ labels.pod }}"}),
        (
            "prom_query",
            {"query": 'container_memory_working_set_bytes{namespace="{{ labels.namespace }}", pod="{{ labels.pod }}"}'},
        ),
    ]
    assert [a.tool for a in rb.actions] == ["kubernetes.restart_deployment"]  # the plan is apart
    plain = parse_runbook_file(write(tmp_path, "apps/restart.md", FULL), tmp_path)
    assert plain.evidence == []
    # Declaring evidence changes the runbook (re-imported, re-indexed); a runbook without it keeps
    # the hash it had before evidence existed.
    assert rb.content_hash != plain.content_hash
    before = {
        "id": plain.id,
        "title": plain.title,
        "body": plain.body,
        "match": [str(m) for m in plain.match],
        "actions": [a.model_dump(mode="json") for a in plain.actions],
    }
    assert plain.content_hash == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()


def test_match_as_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "x.md", "---\nmatch: {alertname: NodeDown, severity: critical}\n---\nbody\n")
    rb = parse_runbook_file(path, tmp_path)
    assert rb.match[0].matches({"alertname": "NodeDown", "severity": "critical"})
    assert {str(m) for m in rb.match} == {"alertname=NodeDown", "severity=critical"}


def test_plain_file_gets_path_id_heading_title_and_alertname(tmp_path: Path) -> None:
    path = write(
        tmp_path, "kubernetes/KubePodCrashLooping.md", "Intro line.\n\n## Pods keep restarting\n\nCheck logs.\n"
    )
    rb = parse_runbook_file(path, tmp_path)
    assert rb.id == "kubernetes/KubePodCrashLooping"
    assert rb.title == "Pods keep restarting"  # the first heading, whatever its level
    assert [str(m) for m in rb.match] == ["alertname=KubePodCrashLooping"]
    assert rb.automation_level == AutomationLevel.MANUAL
    assert rb.actions == []
    assert rb.body.startswith("Intro line.")


def test_plain_file_without_heading_or_alert_like_name(tmp_path: Path) -> None:
    path = write(tmp_path, "notes/disk-cleanup.md", "Delete old images with crictl rmi --prune.\n")
    rb = parse_runbook_file(path, tmp_path)
    assert rb.id == "notes/disk-cleanup"
    assert rb.title == "disk-cleanup"  # the stem
    assert rb.match == []  # not an alert name: no matcher inferred


def test_explicit_empty_match_turns_inference_off(tmp_path: Path) -> None:
    path = write(tmp_path, "TargetDown.md", "---\nmatch: []\n---\n# Target down\ntext\n")
    assert parse_runbook_file(path, tmp_path).match == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("KubePodCrashLooping", True),
        ("etcdNoLeader", True),
        ("Watchdog", True),
        ("CPUThrottlingHigh", True),
        ("README", False),
        ("disk-cleanup", False),
        ("install", False),
        ("Readme", False),
    ],
)
def test_looks_like_alert_name(name: str, expected: bool) -> None:
    assert looks_like_alert_name(name) is expected


def test_hugo_front_matter_title_is_used_and_unknown_keys_ignored(tmp_path: Path) -> None:
    text = "---\ntitle: Kube Pod Crash Looping\nweight: 20\naliases: [/x]\n---\n\n# KubePodCrashLooping\n\nBody.\n"
    path = write(tmp_path, "kubernetes/KubePodCrashLooping.md", text)
    rb = parse_runbook_file(path, tmp_path)
    assert rb.title == "Kube Pod Crash Looping"
    assert rb.id == "kubernetes/KubePodCrashLooping"
    assert [str(m) for m in rb.match] == ["alertname=KubePodCrashLooping"]
    assert rb.body.startswith("# KubePodCrashLooping")


def test_toml_front_matter(tmp_path: Path) -> None:
    path = write(tmp_path, "NodeDown.md", '+++\ntitle = "Node down"\nautomation_level = "standard"\n+++\nbody\n')
    rb = parse_runbook_file(path, tmp_path)
    assert rb.title == "Node down"
    assert rb.automation_level == AutomationLevel.STANDARD


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n\n", "empty"),
        ("---\ntitle: [unclosed\n---\nbody\n", "bad YAML front matter"),
        ("---\ntitle: x\nbody without closing line\n", "never closed"),
        ("---\n- a\n- b\n---\nbody\n", "must be a mapping"),
        ("---\nmatch: 42\n---\nbody\n", "'match'"),
        ("---\nmatch: [not a matcher]\n---\nbody\n", "not a label matcher"),
        ("---\nactions: restart\n---\nbody\n", "'actions'"),
        ("---\nactions: [{arguments: {}}]\n---\nbody\n", "actions.0.tool"),
        ("---\nactions: [{tool: x, arguments: [1]}]\n---\nbody\n", "arguments must be a mapping"),
        ("---\nautomation_level: yolo\n---\nbody\n", "automation_level"),
        ("---\nid: ../etc/passwd\n---\nbody\n", "id"),
        ("---\ntitle: only front matter\n---\n", "no runbook text"),
        ("---\nallow_namespaces: {kube-system: yes}\n---\nbody\n", "'allow_namespaces' must be a list"),
        ("---\nallow_namespaces: [kube-*]\n---\nbody\n", "'kube-*' is not a Kubernetes namespace name"),
        ("---\nevidence: get_pods\n---\nbody\n", "'evidence' must be a list of {tool, arguments}"),
        ("---\nevidence: [{tool: get_pods, arguments: ns}]\n---\nbody\n", "evidence[0].arguments must be a mapping"),
        ("---\nevidence: [{arguments: {}}]\n---\nbody\n", "evidence.0.tool"),
        (
            "---\nevidence: [{tool: get_pods}, {tool: rollout_restart}]\n---\nbody\n",
            "evidence[1]: rollout_restart changes something; evidence calls only look (read-only tools): "
            "put it under actions",
        ),
    ],
)
def test_malformed_files_raise_one_line_errors(tmp_path: Path, text: str, reason: str) -> None:
    path = write(tmp_path, "Bad.md", text)
    with pytest.raises(RunbookFormatError) as info:
        parse_runbook_file(path, tmp_path)
    err = info.value
    assert err.path == path
    assert reason in err.reason
    message = str(err)
    assert message.startswith(str(path)) and "\n" not in message


def test_load_runbooks_reports_bad_files_and_keeps_the_rest(tmp_path: Path) -> None:
    write(tmp_path, "a/Good.md", "# Good\ntext\n")
    write(tmp_path, "b/Broken.md", "---\ntitle: [oops\n---\ntext\n")
    write(tmp_path, "c/Other.md", FULL)
    write(tmp_path, "c/Dup.md", FULL.replace("# Restart it", "# Another"))  # same explicit id
    write(tmp_path, "_index.md", "---\ntitle: section\n---\n")
    write(tmp_path, ".hidden/Secret.md", "# hidden\n")
    write(tmp_path, "notes.txt", "not markdown")
    runbooks, errors = load_runbooks(tmp_path)
    assert sorted(r.id for r in runbooks) == ["a/Good", "apps/restart-crashlooping"]
    # c/Dup.md comes first in path order, so c/Other.md is the duplicate
    assert sorted(e.path.name for e in errors) == ["Broken.md", "Other.md"]
    assert any("duplicate runbook id" in e.reason for e in errors)


def test_ids_are_unique_for_files_sharing_a_stem(tmp_path: Path) -> None:
    write(tmp_path, "team-a/README.md", "# A\ntext\n")
    write(tmp_path, "team-b/README.md", "# B\ntext\n")
    write(tmp_path, "team b/odd name!.md", "# C\ntext\n")
    runbooks, errors = load_runbooks(tmp_path)
    assert errors == []
    assert sorted(r.id for r in runbooks) == ["team-a/README", "team-b/README", "team-b/odd-name"]


def test_runbook_id_for_is_the_relative_path_without_suffix(tmp_path: Path) -> None:
    assert runbook_id_for(tmp_path / "x" / "y" / "Z.md", tmp_path) == "x/y/Z"
    assert runbook_id_for(tmp_path / "Top.md", tmp_path) == "Top"


def test_iter_markdown_files_sorted_and_skips_index_pages(tmp_path: Path) -> None:
    for rel in ("b/Two.md", "a/One.md", "a/_index.md", "_index.md", "c/Three.md"):
        write(tmp_path, rel, "# x\n")
    names = [p.relative_to(tmp_path).as_posix() for p in iter_markdown_files(tmp_path)]
    assert names == ["a/One.md", "b/Two.md", "c/Three.md"]
    with_index = [p.relative_to(tmp_path).as_posix() for p in iter_markdown_files(tmp_path, include_index=True)]
    assert "a/_index.md" in with_index and "_index.md" in with_index


def test_single_file_import(tmp_path: Path) -> None:
    path = write(tmp_path, "deep/NodeDown.md", "# Node down\ntext\n")
    runbooks, errors = load_runbooks(path)
    assert errors == [] and [r.id for r in runbooks] == ["NodeDown"]


# --------------------------------------------------------------------------------------------
# The real corpus
# --------------------------------------------------------------------------------------------


def test_real_corpus_loads_108_runbooks_with_unique_stable_ids() -> None:
    # 117 *.md files: 108 runbooks plus 9 Hugo `_index.md` section pages (skipped); one file
    # without the .md suffix (prometheus-operator/PrometheusOperatorSyncFailed) is not markdown.
    assert len(list(RUNBOOKS_CORPUS.rglob("*.md"))) == 117
    runbooks, errors = load_runbooks(RUNBOOKS_CORPUS)
    assert errors == []
    assert len(runbooks) == 108
    ids = [r.id for r in runbooks]
    assert len(set(ids)) == 108
    assert ids == sorted(ids)
    folders = Counter(i.split("/")[0] for i in ids)
    assert folders == {
        "alertmanager": 7,
        "etcd": 7,
        "general": 4,
        "kube-state-metrics": 4,
        "kubernetes": 47,
        "node": 13,
        "prometheus": 18,
        "prometheus-operator": 8,
    }
    by_id = {r.id: r for r in runbooks}
    crash = by_id["kubernetes/KubePodCrashLooping"]
    assert crash.title == "Kube Pod Crash Looping"  # from the Hugo front matter
    assert crash.match[0].matches({"alertname": "KubePodCrashLooping"})
    assert "weight" not in crash.body and crash.body.startswith("# KubePodCrashLooping")
    # etcd files have no front matter: title from the first heading
    assert by_id["etcd/etcdNoLeader"].title == "etcdNoLeader"
    # every runbook routes on its own alert name
    assert all(str(r.match[0]) == f"alertname={r.id.rsplit('/', 1)[1]}" for r in runbooks)
    # stable: a second parse gives the same ids and hashes
    again, _ = load_runbooks(RUNBOOKS_CORPUS)
    assert [(r.id, r.content_hash) for r in again] == [(r.id, r.content_hash) for r in runbooks]
    assert all(Runbook.model_validate(r.model_dump(mode="json")) == r for r in runbooks[:5])


# --------------------------------------------------------------------------------------------
# Documentation chunking
# --------------------------------------------------------------------------------------------

DOC = """---
title: Operator guide
---
Preamble text.

# Configuration

Intro to configuration.

## Temporal

Set TEMPORAL_ADDRESS.

```bash
# not a heading inside code
temporal server start-dev
```

## Empty section

### Deeper

Deep text.

Setext heading
==============

Under setext.
"""


def test_chunk_markdown_sections_and_heading_paths(tmp_path: Path) -> None:
    path = write(tmp_path, "guide/setup.md", DOC)
    chunks = chunk_markdown(path, tmp_path)
    headings = [c.heading for c in chunks]
    assert headings == [
        "Operator guide",
        "Configuration",
        "Configuration > Temporal",
        "Configuration > Empty section > Deeper",
        "Setext heading",
    ]
    temporal = chunks[2]
    assert "# not a heading inside code" in temporal.text  # code stays in its section
    assert temporal.id == "guide/setup#configuration-temporal:0"
    assert temporal.source == "guide/setup.md"
    assert all(c.content_hash and c.text.strip() for c in chunks)
    assert "title:" not in chunks[0].text
    # stable ids: chunking again gives the same ids
    assert [c.id for c in chunk_markdown(path, tmp_path)] == [c.id for c in chunks]


def test_chunk_long_section_is_split_and_ids_unique() -> None:
    para = "word " * 100
    text = "# Big\n\n" + "\n\n".join(para.strip() for _ in range(10)) + "\n\n# Big\n\nagain\n"
    chunks = chunk_text(text, "big.md", max_chars=600)
    assert all(len(c.text) <= 600 for c in chunks)
    big = [c for c in chunks if c.heading == "Big"]
    assert len(big) >= 8
    assert len({c.id for c in chunks}) == len(chunks)
    assert chunks[0].id == "big#big:0" and chunks[1].id == "big#big:1"
    assert chunks[-1].id == "big#big-2:0"  # the second "Big" section


def test_load_docs_over_the_real_corpus() -> None:
    chunks = load_docs(RUNBOOKS_CORPUS)
    assert len(chunks) > 400
    assert len({c.id for c in chunks}) == len(chunks)
    assert any(c.heading == "KubePodCrashLooping > Diagnosis" for c in chunks)

"""The README lists every metric the gateway serves, and the new ones count what they say."""

from __future__ import annotations

import platform
import re
from pathlib import Path

from prometheus_client import REGISTRY

from gateway.ops import metrics

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_metrics() -> dict[str, str]:
    """metric name -> type, from the README's table between its markers."""
    text = README.read_text()
    table = text.split("<!-- metrics-table -->")[1].split("<!-- /metrics-table -->")[0]
    found = {}
    for row in table.splitlines():
        match = re.match(r"\| `(pypissh_[a-z_]+)(?:\{[a-z_,]+\})?` \| (\w+) \|", row)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def _served_metrics() -> dict[str, str]:
    """metric name -> type, from the `# TYPE` lines of what /metrics serves."""
    metrics.publish_build_info()
    text = metrics.exposition()[0].decode()
    served = {}
    for name, kind in re.findall(r"^# TYPE (pypissh_\S+) (\S+)$", text, re.MULTILINE):
        if not name.endswith("_created"):
            served[name] = kind
    return served


def test_readme_lists_every_metric_with_its_type():
    """The README's metrics table and the `/metrics` output name the same metrics, with the same types."""
    assert _readme_metrics() == _served_metrics()


def test_readme_names_the_labels_each_metric_has():
    """Each labelled metric's labels in the README are the ones it is defined with."""
    text = README.read_text().split("<!-- metrics-table -->")[1]
    for collector_name, labels in [(m._name, m._labelnames) for m in vars(metrics).values()
                                   if hasattr(m, "_labelnames") and getattr(m, "_name", "").startswith("pypissh_")]:
        shown = f"{{{','.join(labels)}}}" if labels else "`"
        assert re.search(rf"`{collector_name}(_total)?{re.escape(shown)}", text), collector_name


def test_build_info_names_the_versions():
    """pypissh_build_info is 1, labelled with the gateway's, Python's and asyncssh's versions."""
    import asyncssh

    metrics.publish_build_info()
    samples = {tuple(sorted(s.labels.items())): s.value for family in REGISTRY.collect()
               if family.name == "pypissh_build_info" for s in family.samples}
    ((labels, value),) = samples.items()
    assert value == 1
    assert dict(labels)["python"] == platform.python_version()
    assert dict(labels)["asyncssh"] == asyncssh.__version__


def test_one_latency_observation_per_upload_and_each_attempt_counted(gateway, alice, ssh_client, legacy_project,
                                                                     legacy_home, upstream):
    """An upload the upstream answers 503 once and then accepts: one latency observation, two attempts
    (a 5xx and a 2xx)."""
    def value(name: str, **labels) -> float:
        return REGISTRY.get_sample_value(name, labels or None) or 0.0

    before = (value("pypissh_upstream_latency_seconds_count"), value("pypissh_upstream_attempts_total", result="5xx"),
              value("pypissh_upstream_attempts_total", result="2xx"))
    upstream.set_fault(status=503, reason="Service Unavailable", count=1)
    result = ssh_client().legacy(legacy_project(), "sdist", "upload", home=legacy_home)
    assert result.returncode == 0, result.stdout + result.stderr
    after = (value("pypissh_upstream_latency_seconds_count"), value("pypissh_upstream_attempts_total", result="5xx"),
             value("pypissh_upstream_attempts_total", result="2xx"))
    assert [a - b for a, b in zip(after, before)] == [1, 1, 1]

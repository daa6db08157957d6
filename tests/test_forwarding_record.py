"""Every upload that reached the upload server has an event row: it is written as "forwarding" before
the POST and completed after it, so a replica killed with SIGKILL mid-forward leaves a row that the
report counts as "unknown" rather than nothing."""

from __future__ import annotations

import json
import signal

from click.testing import CliRunner

from gateway.registry import Registry
from migrate.cli import cli
from testbed import legacyrequests as lr
from tests.helpers import recorded_events, serve_process, start_held_upload


def test_kill_9_while_forwarding_leaves_a_row_the_report_counts_as_unknown(tmp_path, upstream, host_key_dir,
                                                                           user_keys, project_name):
    """SIGKILL of `pypissh-gateway serve` while the upload server holds an upload: the registry keeps a
    "forwarding" row for it (who, which file, its sha256) and the report counts it as unknown."""
    process = serve_process(tmp_path, upstream, host_key_dir, {"alice": user_keys["alice"]})
    registry = Registry.from_url(process.settings.database_url)
    uploading = None
    try:
        uploading, content = start_held_upload(process, user_keys["alice"], upstream, project_name, tmp_path,
                                               hold=10)
        process.process.send_signal(signal.SIGKILL)
        process.process.wait(10)
        out, _ = uploading.communicate(timeout=30)
        assert b"HTTP/1.0" not in out  # the client never got an answer
    finally:
        if uploading is not None and uploading.poll() is None:
            uploading.kill()
            uploading.communicate()
        process.stop()

    (row,) = recorded_events(registry)
    registry.close()
    assert (row.outcome, row.account_name, row.action) == ("forwarding", "alice", "file_upload")
    assert row.filename == project_name.lower().replace("-", "_") + "-1.0.tar.gz"
    assert row.size == len(content) and row.sha256 and row.upstream_status is None

    report = CliRunner().invoke(cli, ["--set", f"database_url={process.settings.database_url}",
                                      "report", "--format", "json"])
    assert report.exit_code == 0, report.output
    summary = json.loads(report.stdout)["summary"]
    assert summary["unknown"] == 1 and summary["forwarded"] == 0


def test_a_forwarded_upload_has_one_row_completed_in_place(gateway, alice, ssh_client, project_name, upstream):
    """A normal upload leaves exactly one row, written before forwarding and completed with the answer."""
    content = lr.make_sdist(project_name, "1.0")
    result = ssh_client().run(data=lr.python3_upload(project_name, "1.0", content))
    assert result.stdout.startswith(b"HTTP/1.0 200 "), result.stderr
    (row,) = recorded_events(gateway.registry)
    assert (row.outcome, row.upstream_status, row.size) == ("forwarded", 200, len(content))
    assert row.duration_ms is not None and row.id is not None

"""The files in deploy/ pass the checks of the programs that read them: `haproxy -c`, `sshd -t`
(and sshd's own view of the effective settings), `systemd-analyze verify`.

Each check runs on the file as shipped; where a path names something that exists only on a
production machine (the installed program), a temporary copy points at an executable that exists
here instead, and nothing else is changed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from testbed import SOURCE_ROOT
from testbed.sshdutil import SSHD, privilege_separation_dir

DEPLOY = SOURCE_ROOT / "deploy"
INSTALLED_PROGRAM = Path(sys.prefix) / "bin" / "pypissh-gateway"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def test_haproxy_accepts_the_shipped_configuration():
    """`haproxy -c` accepts deploy/haproxy.cfg exactly as shipped."""
    if shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (./dev test installs it)")
    check = subprocess.run(["haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


# -- OpenSSH mode ---------------------------------------------------------------------------------
def _effective(config: Path, user: str) -> dict[str, str]:
    """sshd's effective settings for a login by `user` (`sshd -T -C`), Match blocks applied."""
    done = subprocess.run([SSHD, "-T", "-f", str(config), "-C", f"user={user},host=localhost,addr=127.0.0.1"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def _including(folder: Path, snippet: str) -> Path:
    """A minimal sshd_config that includes `snippet` from a conf.d folder, as on Debian (Include
    first, then the machine's own global settings)."""
    if not Path(SSHD).exists():
        pytest.skip("openssh-server is not installed (./dev test installs it)")
    privilege_separation_dir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_key")], check=True)
    conf_d = folder / "sshd_config.d"
    conf_d.mkdir()
    (conf_d / "pypissh.conf").write_text(snippet)
    config = folder / "sshd_config"
    config.write_text(f"Include {conf_d}/*.conf\nPort 2222\nListenAddress 127.0.0.1\n"
                      f"HostKey {folder / 'host_key'}\nPidFile {folder / 'sshd.pid'}\nUsePAM no\n"
                      "X11Forwarding yes\n")
    return config


# -- systemd --------------------------------------------------------------------------------------
UNITS = ("pypissh-gateway.service", "pypissh-evidence.service", "pypissh-evidence.timer", "pypissh-prune.service",
         "pypissh-prune.timer")
SERVICES = [name for name in UNITS if name.endswith(".service")]


def _units_here(tmp_path: Path) -> list[Path]:
    """Copies of the shipped units, their programs pointed at this environment's installed ones."""
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is not installed (./dev test installs Debian's systemd)")
    copies = []
    for name in UNITS:
        text = (DEPLOY / name).read_text()
        for shipped in set(re.findall(r"^ExecStart=(/\S+)", text, re.MULTILINE)):
            assert shipped.startswith("/opt/pypissh/bin/")
            text = text.replace(shipped, str(INSTALLED_PROGRAM.with_name(Path(shipped).name)))
        copy = tmp_path / name
        copy.write_text(text)
        copies.append(copy)
    return copies


def test_systemd_units_verify_without_a_warning(tmp_path):
    """`systemd-analyze verify` reports nothing about the gateway's unit, nor about the timers and
    services of `evidence refresh` and `prune` (their programs pointed at the installed ones)."""
    units = _units_here(tmp_path)
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", "--generators=no", *map(str, units)],
                          capture_output=True, text=True, timeout=60)
    about_units = [line for line in (done.stdout + done.stderr).splitlines()
                   if any(unit.name in line for unit in units)]
    assert done.returncode == 0 and about_units == [], done.stdout + done.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_systemd_rates_each_service_at_most_2(name, tmp_path):
    """`systemd-analyze security` rates every shipped service 2.0 or below ("OK")."""
    unit = next(copy for copy in _units_here(tmp_path) if copy.name == name)
    done = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
                          capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 2.0, done.stdout


def test_sysusers_creates_the_user_every_unit_runs_as(tmp_path):
    """systemd-sysusers, on an empty root, makes the user and group the units name, its home the
    units' state directory and no login shell."""
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.skip("systemd-sysusers is not installed (./dev test installs Debian's systemd)")
    (tmp_path / "etc").mkdir()
    done = subprocess.run([sysusers, f"--root={tmp_path}", str(DEPLOY / "pypissh-gateway.sysusers")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (user,) = [line.split(":") for line in (tmp_path / "etc" / "passwd").read_text().splitlines()]
    (group,) = [line.split(":") for line in (tmp_path / "etc" / "group").read_text().splitlines()]
    assert user[0] == group[0] and user[3] == group[2]
    assert user[6] == "/usr/sbin/nologin"
    for name in SERVICES:
        unit = (DEPLOY / name).read_text()
        assert re.search(rf"^User={user[0]}$", unit, re.MULTILINE) and re.search(rf"^Group={group[0]}$", unit,
                                                                                  re.MULTILINE), name
        state = re.search(r"^StateDirectory=(\S+)$", unit, re.MULTILINE).group(1)
        assert user[5] == f"/var/lib/{state}", name


def test_timers_run_evidence_refresh_daily_and_prune_weekly():
    """The timers start their services; the services run `evidence refresh` and `prune --yes`."""
    for timer, calendar, command in (("pypissh-evidence", "*-*-* ", "evidence refresh"),
                                     ("pypissh-prune", "Sun *-*-* ", "prune --before 400d --yes")):
        text = (DEPLOY / f"{timer}.timer").read_text()
        assert re.search(rf"^OnCalendar={re.escape(calendar)}", text, re.MULTILINE), timer
        assert re.search(r"^Persistent=true$", text, re.MULTILINE)
        service = (DEPLOY / f"{timer}.service").read_text()
        assert re.search(rf"^ExecStart=/opt/pypissh/bin/pypissh-migrate .*{re.escape(command)}$", service,
                         re.MULTILINE), timer


def test_systemd_waits_longer_than_the_drain():
    """The unit's TimeoutStopSec outlasts the example configuration's drain_seconds, so a stop or a
    restart never kills uploads the gateway would have finished."""
    unit = (DEPLOY / "pypissh-gateway.service").read_text()
    timeout = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE).group(1))
    config = tomllib.loads((DEPLOY / "config.toml").read_text())
    assert timeout > config["drain_seconds"]
    assert re.search(r"^KillSignal=SIGTERM$", unit, re.MULTILINE)
    assert re.search(r"^ExecStart=\S+ serve$", unit, re.MULTILINE)


def test_replicas_listen_where_the_balancer_sends():
    """The example configuration's listen port is the port of every server in haproxy.cfg, and of
    the replica settings its comment gives."""
    listen = tomllib.loads((DEPLOY / "config.toml").read_text())["listen"]
    port = listen.rpartition(":")[2]
    haproxy = (DEPLOY / "haproxy.cfg").read_text()
    servers = re.findall(r"^\s*server \S+ [\d.]+:(\d+)", haproxy, re.MULTILINE)
    assert servers and set(servers) == {port}
    assert f'listen = "{listen}"' in haproxy


def test_systemctl_reload_sends_sighup_to_the_main_process():
    """`systemctl reload` sends SIGHUP to the supervisor (which passes it to its workers), the
    signal `serve` reopens log_file on (tests/test_hangup.py)."""
    unit = (DEPLOY / "pypissh-gateway.service").read_text()
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", unit, re.MULTILINE)


def test_unit_runs_check_before_every_start_without_the_upstream():
    """ExecStartPre runs `check --offline` (tests/test_check.py shows it never contacts the
    upstream), with the same program the unit serves with."""
    unit = (DEPLOY / "pypissh-gateway.service").read_text()
    program = re.search(r"^ExecStart=(\S+) serve$", unit, re.MULTILINE).group(1)
    assert re.search(rf"^ExecStartPre={re.escape(program)} check --offline$", unit, re.MULTILINE)


def test_unit_and_configuration_share_one_home():
    """The unit's state directory (made 0700 by systemd before the start) is the home that its
    PYPISSH_HOME and the example configuration name."""
    unit = (DEPLOY / "pypissh-gateway.service").read_text()
    state = re.search(r"^StateDirectory=(\S+)$", unit, re.MULTILINE).group(1)
    assert re.search(r"^StateDirectoryMode=0700$", unit, re.MULTILINE)
    home = f"/var/lib/{state}"
    assert re.search(rf"^Environment=PYPISSH_HOME={re.escape(home)}$", unit, re.MULTILINE)
    assert tomllib.loads((DEPLOY / "config.toml").read_text())["home"] == home


def test_sshd_accepts_the_openssh_mode_snippet_as_shipped(tmp_path):
    """sshd_config.openssh-mode, unchanged (its grep exists here): `sshd -t` is silent; for user
    submit the key is looked up with grep in the replica's file, as the replica's user, with keys
    only, no TTY and no forwarding; for anyone else, and for the global settings after the
    Include, the snippet changes nothing."""
    if not Path(SSHD).exists():
        pytest.skip("openssh-server is not installed (./dev test installs it)")
    config = _including(tmp_path, (DEPLOY / "sshd_config.openssh-mode").read_text())
    check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0 and check.stderr == "", check.stderr
    submit = _effective(config, "submit")
    assert submit["authorizedkeyscommand"] == "/usr/bin/grep -F -- %k /var/lib/pypissh-gateway/authorized_keys"
    assert (submit["authorizedkeyscommanduser"], submit["authorizedkeysfile"]) == ("pypissh", "none")
    for name in ("passwordauthentication", "kbdinteractiveauthentication", "permittty", "x11forwarding",
                 "allowtcpforwarding"):
        assert submit[name] == "no", name
    assert submit["maxsessions"] == "10"
    assert "MaxSessions 10" in (DEPLOY / "sshd_config.openssh-mode").read_text()
    other = _effective(config, "alice")
    assert other["authorizedkeyscommand"] == "none"
    assert other["x11forwarding"] == "yes" and other["permittty"] == "yes"


def test_key_file_lines_of_the_example_configuration_fit_the_unit_and_the_snippet():
    """The example's authorized_keys_file, uncommented, is the file the sshd snippet greps, in
    the directory the systemd unit creates (StateDirectory=), and the settings have no problem."""
    from gateway.settings import load, problems

    text = (DEPLOY / "config.toml").read_text()
    names = ("openssh_mode", "shim_socket", "shim_user", "authorized_keys_file", "shim_python")
    enabled = re.sub(rf"(?m)^# ({'|'.join(names)}) = ", r"\1 = ", text)
    config = tomllib.loads(enabled)
    unit = (DEPLOY / "pypissh-gateway.service").read_text()
    state = re.search(r"^StateDirectory=(\S+)$", unit, re.MULTILINE).group(1)
    assert Path(config["authorized_keys_file"]).parent == Path("/var/lib") / state
    snippet = (DEPLOY / "sshd_config.openssh-mode").read_text()
    assert f"AuthorizedKeysCommand /usr/bin/grep -F -- %k {config['authorized_keys_file']}\n" in snippet
    settings = load(None, {}, {name: config[name] for name in names})
    assert settings.authorized_keys_file == config["authorized_keys_file"]
    assert [p for p in problems(settings) if p.setting in ("authorized_keys_file", "shim_python")] == []


def test_openssh_mode_lines_of_the_example_configuration_fit_the_unit():
    """The example configuration's OpenSSH-mode settings, uncommented, load; its shim_socket lies in
    the directory the systemd unit creates (RuntimeDirectory=)."""
    from gateway.settings import load

    text = (DEPLOY / "config.toml").read_text()
    enabled = re.sub(r"(?m)^# (openssh_mode|shim_socket|shim_user|authorized_keys_file) = ", r"\1 = ", text)
    assert enabled != text
    config = tomllib.loads(enabled)
    assert config["openssh_mode"] is True
    unit = (DEPLOY / "pypissh-gateway.service").read_text()
    runtime = re.search(r"^RuntimeDirectory=(\S+)$", unit, re.MULTILINE).group(1)
    assert Path(config["shim_socket"]).parent == Path("/run") / runtime
    names = ("openssh_mode", "shim_socket", "shim_user", "authorized_keys_file")
    settings = load(None, {}, {name: config[name] for name in names})
    assert (settings.openssh_mode, settings.shim_user) == (True, "submit")


@pytest.mark.parametrize("name", ["pypissh-evidence.service", "pypissh-prune.service"])
def test_timer_services_commands_run_on_a_fresh_gateway(name, tmp_path):
    """Each timer service's command line, as shipped, runs and succeeds on a gateway made by `init`."""
    import shlex

    from tests.cli import environment, prepare_home

    home = prepare_home(tmp_path / "home", [(("pypissh-gateway", "init"), "")])
    command = re.search(r"^ExecStart=(.+)$", (DEPLOY / name).read_text(), re.MULTILINE).group(1)
    argv = shlex.split(command)
    argv[0] = str(INSTALLED_PROGRAM.with_name(Path(argv[0]).name))
    done = subprocess.run(argv, env=environment(PYPISSH_HOME=str(home)), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# -- Prometheus -----------------------------------------------------------------------------------
PROMTOOL = shutil.which("promtool")
ALERTS = DEPLOY / "alerts.yml"


def _promtool() -> str:
    if PROMTOOL is None:
        pytest.skip("promtool is not installed (./dev test installs Debian's prometheus)")
    return PROMTOOL


def test_alert_rules_pass_promtool():
    """`promtool check rules` accepts deploy/alerts.yml."""
    done = subprocess.run([_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_name_only_metrics_the_gateway_exports():
    """Every pypissh_* metric in the rules is one gateway/ops/metrics.py defines (a renamed metric
    would leave an alert that never fires)."""
    from gateway.ops import metrics

    source = Path(metrics.__file__).read_text()
    used = set(re.findall(r"\b(pypissh_[a-z_]+)\b", ALERTS.read_text()))
    assert len(used) >= 6, used
    for name in used:  # prometheus-client adds _total to a counter's name
        assert f'"{name}"' in source or f'"{name.removesuffix("_total")}"' in source, name


# Series and the alerts they must raise, for `promtool test rules`.
SERIES = {
    'pypissh_build_info{job="pypissh-gateway", instance="gw1", version="0.1.0"}': "1x180",
    'pypissh_build_info{job="pypissh-gateway", instance="gw2", version="0.2.0"}': "1x180",
    'pypissh_pool_saturated{job="pypissh-gateway", instance="gw1", pool="upload"}': "0 1x20",
    'pypissh_listening_processes{job="pypissh-gateway", instance="gw2"}': "2x5 0x20",
    'up{job="pypissh-gateway", instance="gw3"}': "1x5 0x20",
    'pypissh_upstream_attempts_total{job="pypissh-gateway", instance="gw1", result="2xx"}': "0+10x30",
    'pypissh_upstream_attempts_total{job="pypissh-gateway", instance="gw1", result="no_answer"}': "0+10x30",
}
EXPECTED = [  # (when, alert, the labels of each alert raised)
    ("10m", "PypisshPoolSaturated", [{"instance": "gw1", "pool": "upload", "severity": "warning"}]),
    ("15m", "PypisshReplicaNotReady", [{"job": "pypissh-gateway", "instance": "gw2", "severity": "page"}]),
    ("15m", "PypisshReplicaDown", [{"job": "pypissh-gateway", "instance": "gw3", "severity": "page"}]),
    ("25m", "PypisshUpstreamFailing", [{"instance": "gw1", "severity": "page"}]),
    ("1h", "PypisshMixedVersions", []),  # a rolling deploy has two hours
    ("150m", "PypisshMixedVersions", [{"severity": "warning"}]),
]


def _annotations(alert: str, labels: dict[str, str]) -> dict[str, str]:
    """The alert's annotations as Prometheus renders them for `labels` (alerts.yml's only
    template is {{ $labels.NAME }})."""
    block = ALERTS.read_text().split(f"- alert: {alert}\n", 1)[1].split("- alert: ", 1)[0]
    found = dict(re.findall(r'^\s+(summary|description): "(.*)"$', block, re.MULTILINE))
    return {key: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], value)
            for key, value in found.items()}


def test_alert_rules_fire_on_the_situations_they_name(tmp_path):
    """`promtool test rules`: a saturated pool, a replica not listening, one down, half the upstream
    attempts unanswered and two versions side by side each raise their alert, after their `for`."""
    import json

    cases = [{"eval_time": when, "alertname": alert,
              "exp_alerts": [{"exp_labels": labels, "exp_annotations": _annotations(alert, labels)}
                             for labels in raised]}
             for when, alert, raised in EXPECTED]
    tests = tmp_path / "alerts_test.yml"  # JSON is YAML
    tests.write_text(json.dumps({
        "rule_files": [str(ALERTS)], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": [{"series": k, "values": v} for k, v in SERIES.items()],
                   "alert_rule_test": cases}]}))
    done = subprocess.run([_promtool(), "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

"""monitoring without a host: the settings' rules, every file the module writes checked by the
tool of its daemon (promtool, amtool, the blackbox exporter, mtail, from the Debian packages that
scripts/monitoring-tools unpacks), and every alert proven to fire and to stay quiet."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from holistix_deploy import monitoring
from holistix_deploy.settings import MONITORING_LOOPBACK_PORTS, SettingsError, validate_data

from .helpers import ROOT, host_script, problems_for

TOOLS = Path(os.environ.get("HOLISTIX_MONITORING_TOOLS", ROOT / ".tools" / "monitoring" / "bin"))
# minute-scale alerts, and the hour- and day-scale ones (evaluated hourly, so they run fast)
RULES_TESTS = sorted((Path(__file__).parent / "monitoring").glob("rules_test*.yml"))


def _tool(name: str) -> str:
    path = TOOLS / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `make unit` (scripts/monitoring-tools unpacks it)")
    return str(path)


def _run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120)


def _settings(valid_data, **overrides):
    return validate_data({**valid_data, **overrides}, environ={}, host_name="vps1")


@pytest.fixture
def mailing_data(valid_data):
    return {
        **valid_data,
        "smtp_host": "smtp.example.net",
        "smtp_user": "alerts@example.com",
        "alert_email_to": ["ops@example.com", "oncall@example.com"],
        "alert_webhook_url": "https://hooks.example.net/holistix",
        # Ganymede mails through the same server
        "ganymede_egress_networks": ["198.51.100.0/24"],
    }


# -- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("alert_email_to", ["ops@example.com", "not an address"], "entry 1 ('not an address'): must be an e-mail"),
        ("alert_email_to", ["ops@example.com", "ops@example.com"], "lists the same address twice"),
        ("alert_webhook_url", "hooks.example.net/x", "must be an http(s) URL"),
        ("alert_webhook_url", "https://hooks.example.net/x y", "must be an http(s) URL"),
        ("monitoring_retention_size", "4TB", "must be a size with a unit K, M or G"),
        ("alert_disk_used_percent", 100, "less than or equal to 99"),
        ("monitoring_probe_ca_file", "/nonexistent/ca.pem", "is not a PEM certificate file"),
        ("logs_retention_days", 0, "greater than or equal to 1"),
        ("logs_retention_size", "1.5G", "must be a size with a unit K, M or G"),
        ("victorialogs_version", "v1.52.1", "like 1.2.3 (no leading v)"),
        ("victorialogs_download_url", "https://mirror.example.com/{name}-v{version}.tar.gz", "must contain {arch}"),
        ("victorialogs_download_url", "https://mirror.example.com/{arch}/v{version}.tar.gz", "must contain {name}"),
        ("victorialogs_download_url", "https://mirror.example.com/{name}-{os}-{arch}.tar.gz", "{os} is unknown"),
        ("victorialogs_sha256", {"victoria-logs-linux-amd64-v1.52.1.tar.gz": "abc"}, "is not a sha256"),
        ("victorialogs_sha256", {"victoria-logs-linux-amd64.tar.gz": "a" * 64}, "not a release tarball's name"),
        ("traces_retention_hours", 0, "greater than or equal to 1"),
        ("jaeger_version", "v2.13.0", "no leading v"),
        ("jaeger_sha256", {"amd64": "abc"}, "not a sha256"),
        ("jaeger_download_url", "https://mirror.example.com/jaeger-{version}.tar.gz", "must contain {arch}"),
        ("dashboards_subdomain", "Dashboards", "must be one DNS label"),
        ("dashboards_subdomain", "ops.dashboards", "must be one DNS label"),
        ("dashboards_subdomain", "ganymede", "is a name the platform serves"),
        ("dashboards_subdomain", "org-ops", "is a name the platform serves"),
        ("dashboards_public", "maybe", "valid boolean"),
    ],
)
def test_bad_monitoring_settings_are_refused_naming_the_key_and_rule(valid_data, key, value, rule):
    problems = problems_for({**valid_data, key: value})
    assert len(problems) == 1 and problems[0].startswith(f"{key} = ") and rule in problems[0], problems


def test_alert_mail_needs_an_smtp_server_and_account(valid_data):
    problems = problems_for({**valid_data, "alert_email_to": ["ops@example.com"]})
    assert any("alert_email_to" in problem and "smtp_host as smtp_user" in problem for problem in problems), problems


@pytest.mark.parametrize("port", sorted(MONITORING_LOOPBACK_PORTS.values()))
def test_a_platform_port_on_a_monitoring_port_is_refused(valid_data, port):
    problems = problems_for({**valid_data, "ganymede_port": port})
    assert any("ganymede_port" in problem and "monitoring's" in problem for problem in problems), problems


# -- every listener on loopback, every unit confined -------------------------------------------------


def test_every_component_listens_on_loopback_only(valid_data):
    environment = monitoring.unit_environment(_settings(valid_data))
    assert set(environment) == {component.unit for component in monitoring.COMPONENTS if component.package}
    listens = re.findall(
        r"--(?:web\.listen-address|address)[= ](\S+)|^HOST=(\S+)", "\n".join(environment.values()), re.M
    )
    addresses = {address or host for address, host in listens}
    assert addresses and all(address.startswith("127.0.0.1") for address in addresses), addresses
    # Alertmanager's gossip listener would bind every address: switched off
    assert "--cluster.listen-address=" in environment["prometheus-alertmanager"].split('"')[1].split()


def test_every_component_is_sandboxed_and_the_local_ones_reach_loopback_only():
    for component in monitoring.COMPONENTS:
        drop_in = monitoring.render_hardening(component)
        for directive in ("ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "ProtectHome="):
            assert directive in drop_in, (component.unit, directive)
        assert ("IPAddressDeny=any" in drop_in) == component.loopback_only, component.unit


def test_retention_comes_from_the_settings(valid_data):
    arguments = monitoring.unit_arguments(
        _settings(valid_data, monitoring_retention_days=90, monitoring_retention_size="20G")
    )["prometheus"]
    assert "--storage.tsdb.retention.time=90d" in arguments and "--storage.tsdb.retention.size=20GB" in arguments


# -- logs: the store, the shippers, the release they come from -----------------------------------------


def test_a_missing_release_checksum_stops_the_run_naming_the_setting_and_the_tarball(valid_data):
    settings = _settings(valid_data, victorialogs_sha256={"victoria-logs-linux-amd64-v1.52.1.tar.gz": "a" * 64})
    with pytest.raises(SettingsError) as stopped:
        monitoring.victorialogs_downloads(settings, "amd64", "vps1")
    assert "victorialogs_sha256 = " in str(stopped.value)
    assert "no checksum for vlutils-linux-amd64-v1.52.1.tar.gz" in str(stopped.value)


def test_each_release_tarball_comes_from_its_url_with_its_checksum(valid_data):
    checksums = {"victoria-logs-linux-arm64-v1.52.1.tar.gz": "a" * 64, "vlutils-linux-arm64-v1.52.1.tar.gz": "b" * 64}
    releases = monitoring.victorialogs_downloads(_settings(valid_data, victorialogs_sha256=checksums), "arm64", "vps1")
    assert [(release["url"].rsplit("/", 2)[1:], release["sha256"]) for release in releases] == [
        (["v1.52.1", "victoria-logs-linux-arm64-v1.52.1.tar.gz"], "a" * 64),
        (["v1.52.1", "vlutils-linux-arm64-v1.52.1.tar.gz"], "b" * 64),
    ]
    installed = {path for release in releases for path in release["binaries"].values()}
    assert installed == {"/usr/local/bin/victoria-logs", "/usr/local/bin/vlagent", "/usr/local/bin/vlogscli"}


def test_the_logs_store_keeps_what_the_settings_say_on_loopback_only(valid_data):
    units = monitoring.render_units(_settings(valid_data, logs_retention_days=7, logs_retention_size="512M"))
    store = units["/etc/systemd/system/victoria-logs.service"]
    assert "-httpListenAddr=127.0.0.1:9428 " in store
    assert "-retentionPeriod=7d " in store and f"-retention.maxDiskSpaceUsageBytes={512 * 1024**2}\n" in store
    shipper = units["/etc/systemd/system/vlagent.service"]
    assert "-httpListenAddr=127.0.0.1:9429 " in shipper
    assert "-remoteWrite.url=http://127.0.0.1:9428/insert/native " in shipper
    assert "-fileCollector.glob=/var/log/nginx/*.log " in shipper
    # neither listens anywhere else: no syslog or other receivers are switched on
    assert not re.search(r"-(syslog|opentelemetry|loki)\S*", store + shipper)


def test_the_journal_goes_to_the_logs_store_on_loopback(valid_data):
    upload = monitoring.render_journal_upload(_settings(valid_data))
    assert upload[monitoring.JOURNAL_UPLOAD_CONFIG].endswith("[Upload]\nURL=http://127.0.0.1:9428/insert/journald\n")
    assert "IPAddressAllow=localhost" in upload[monitoring.JOURNAL_UPLOAD_DROP_IN]


# -- traces: Jaeger, the OTLP endpoint ---------------------------------------------------------------


def _jaeger_binary(settings, tmp_path: Path) -> str:
    """The jaeger binary of the pinned release's tarball that scripts/jaeger-artifact made (as
    production downloads it)."""
    artifacts = Path(os.environ.get("HOLISTIX_ARTIFACTS", "/var/cache/holistix-deploy/artifacts"))
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
    name = f"jaeger-{settings.jaeger_version}-linux-{arch}"
    if not (artifacts / f"{name}.tar.gz").exists():
        pytest.fail(f"no {name}.tar.gz in {artifacts}: run `make unit` (scripts/jaeger-artifact builds it)")
    subprocess.run(["tar", "-xzf", str(artifacts / f"{name}.tar.gz"), "-C", str(tmp_path)], check=True)
    return str(tmp_path / name / "jaeger")


def test_the_jaeger_config_passes_jaeger_validate(valid_data, tmp_path):
    settings = _settings(valid_data)
    config = tmp_path / "config.yaml"
    config.write_text(monitoring.render_jaeger_config(settings))
    jaeger = _jaeger_binary(settings, tmp_path)
    checked = _run(jaeger, "validate", f"--config=file:{config}")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # ... and the checker refuses a broken one (the live file would stay)
    config.write_text(config.read_text().replace("ttl:", "time_to_live:"))
    assert _run(jaeger, "validate", f"--config=file:{config}").returncode != 0


def test_otlp_listens_on_loopback_and_the_bridge_and_everything_else_on_loopback(valid_data):
    settings = _settings(valid_data, docker_bridge_cidr="172.18.0.1/16", traces_retention_hours=24)
    config = yaml.safe_load(monitoring.render_jaeger_config(settings))
    endpoints = [
        protocol["endpoint"] for receiver in config["receivers"].values() for protocol in receiver["protocols"].values()
    ]
    assert sorted(endpoints) == ["127.0.0.1:4317", "127.0.0.1:4318", "172.18.0.1:4317", "172.18.0.1:4318"]
    own = [config["extensions"]["healthcheckv2"]["http"]["endpoint"]] + [
        config["extensions"]["jaeger_query"][protocol]["endpoint"] for protocol in ("http", "grpc")
    ]
    assert all(endpoint.startswith("127.0.0.1:") for endpoint in own), own
    assert (
        config["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]["host"] == "127.0.0.1"
    )
    assert config["extensions"]["jaeger_storage"]["backends"]["traces"]["badger"]["ttl"]["spans"] == "24h"
    # OTLP logs go on to the logs store; both pipelines take both receivers
    assert config["exporters"]["otlphttp/logs"]["logs_endpoint"] == "http://127.0.0.1:9428/insert/opentelemetry/v1/logs"
    assert {tuple(p["receivers"]) for p in config["service"]["pipelines"].values()} == {
        ("otlp/loopback", "otlp/bridge")
    }
    unit = monitoring.render_units(settings)["/etc/systemd/system/jaeger.service"]
    assert "IPAddressDeny=any\nIPAddressAllow=localhost 172.18.0.0/16\n" in unit


def test_a_missing_jaeger_checksum_stops_the_run_naming_the_setting(valid_data):
    with pytest.raises(SettingsError) as stopped:
        monitoring.jaeger_download(_settings(valid_data, jaeger_sha256={"arm64": "a" * 64}), "amd64", "vps1")
    assert "jaeger_sha256 = {'arm64': " in str(stopped.value) and "architecture amd64" in str(stopped.value)


def test_ganymede_and_the_gateways_are_given_the_otlp_endpoint(valid_data):
    from holistix_deploy import ganymede

    settings = _settings(valid_data, docker_bridge_cidr="172.18.0.1/16")
    variables = ganymede.environment(settings)
    assert variables["OTLP_ENDPOINT_HTTP"] == "http://127.0.0.1:4318"
    assert variables["OTLP_ENDPOINT_GRPC"] == "http://127.0.0.1:4317"
    assert monitoring.otlp_endpoints(settings, "bridge") == {
        "http": "http://172.18.0.1:4318",
        "grpc": "http://172.18.0.1:4317",
    }


# -- the files, checked by their daemons' own tools ------------------------------------------------------


def _write_all(settings, directory: Path) -> dict[str, Path]:
    rules = directory / "holistix.yml"
    rules.write_text(monitoring.render_rules(settings))
    written = {"rules": rules}
    for key, content in (
        ("prometheus", monitoring.render_prometheus_config(settings).replace(monitoring.RULES_FILE, str(rules))),
        ("alertmanager", monitoring.render_alertmanager_config(settings)),
        ("blackbox", monitoring.render_blackbox_config(settings)),
    ):
        written[key] = directory / f"{key}.yml"
        written[key].write_text(content)
    return written


def test_rules_pass_promtools_strictest_lint(valid_data, tmp_path):
    files = _write_all(_settings(valid_data), tmp_path)
    checked = _run(_tool("promtool"), "check", "rules", "--lint=all", "--lint-fatal", str(files["rules"]))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_prometheus_config_passes_promtool_and_scrapes_every_component(valid_data, tmp_path):
    settings = _settings(valid_data)
    files = _write_all(settings, tmp_path)
    checked = _run(_tool("promtool"), "check", "config", str(files["prometheus"]))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(files["prometheus"].read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {component.job for component in monitoring.COMPONENTS} | {"coredns"} <= set(jobs)
    probed = {
        target for job in ("https_frontend", "https_api", "dns") for target in jobs[job]["static_configs"][0]["targets"]
    }
    assert probed == {"https://app.example.com/", "https://ganymede.app.example.com/", "127.0.0.1:53"}
    targets = [t for job in jobs.values() if "params" not in job for t in job["static_configs"][0]["targets"]]
    assert all(target.startswith("127.0.0.1:") for target in targets), targets


@pytest.mark.parametrize("mail", [False, True])
def test_alertmanager_config_passes_amtool_and_routes_every_alert_to_mail_and_webhook(
    valid_data, mailing_data, tmp_path, mail
):
    settings = _settings(mailing_data if mail else valid_data)
    files = _write_all(settings, tmp_path)
    amtool = _tool("amtool")
    checked = _run(amtool, "check-config", str(files["alertmanager"]))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for labels in (["severity=critical"], ["severity=warning", "alertname=DiskUsageHigh"]):
        routed = _run(amtool, "config", "routes", "test", f"--config.file={files['alertmanager']}", *labels)
        assert routed.stdout.strip() == ("mail,webhook" if mail else "nobody"), routed.stdout + routed.stderr
    config = yaml.safe_load(files["alertmanager"].read_text())
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    if mail:
        assert receivers["mail"]["email_configs"][0]["to"] == "ops@example.com, oncall@example.com"
        assert receivers["webhook"]["webhook_configs"][0]["url"] == "https://hooks.example.net/holistix"
        # the password is read from a file, never written into the configuration
        assert config["global"]["smtp_auth_password_file"] == monitoring.SMTP_PASSWORD_FILE
        assert config["global"]["smtp_require_tls"] is False  # port 465: implicit TLS
    else:
        assert receivers == {"nobody": {"name": "nobody"}}


def test_blackbox_config_passes_the_exporters_check(valid_data, tmp_path):
    files = _write_all(_settings(valid_data), tmp_path)
    checked = _run(_tool("prometheus-blackbox-exporter"), "--config.check", f"--config.file={files['blackbox']}")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    modules = yaml.safe_load(files["blackbox"].read_text())["modules"]
    # Ganymede's rule (ganymede_health_path): any answer below 500 is healthy
    assert modules["https_api"]["http"]["valid_status_codes"] == list(range(200, 500))


def test_mtail_counts_ganymedes_answers_by_status_from_the_access_log(tmp_path):
    class Settings:
        domain = "app.example.com"

    programs = tmp_path / "progs"
    programs.mkdir()
    (programs / "holistix_nginx.mtail").write_text(monitoring.render_mtail_program(Settings()))
    # the nginx module's "holistix" log format; nginx writes a quote inside a field as \x22
    line = '203.0.113.7 - [27/Nov/2026:10:00:00 +0000] "{request} HTTP/2.0" {status} 35 "-" "{agent}" 0.003 {host}\n'
    log = tmp_path / "access.log"
    log.write_text(
        "".join(
            [
                line.format(request="GET /health", status=200, agent="curl/8", host="ganymede.app.example.com"),
                line.format(
                    request="POST /x?token=[redacted]",
                    status=502,
                    agent="say \\x22hi\\x22",
                    host="ganymede.app.example.com",
                ),
                line.format(request="GET /", status=200, agent="curl/8", host="app.example.com"),
                line.format(request="GET /", status=404, agent="curl/8", host="org-1.app.example.com"),
                line.format(request="GET /", status=500, agent="curl/8", host="ganymede.other.example.org"),
                # the monitoring's own probe
                line.format(request="GET /", status=200, agent="Blackbox Exporter/0.26.0", host="app.example.com"),
            ]
        )
    )
    counted = _run(
        _tool("mtail"), "--one_shot", "--one_shot_format=prometheus", "--progs", str(programs), "--logs", str(log)
    )
    assert counted.returncode == 0, counted.stderr[-2000:]
    samples = {
        (server, status): float(value)
        for server, status, value in re.findall(
            r'^holistix_nginx_responses_total\{prog="[^"]+",server="(\w+)",status="(\d+)"\} (\S+)$',
            counted.stdout,
            re.M,
        )
    }
    # another domain's names are not this platform's, the probes are not its traffic: not counted
    assert samples == {("api", "200"): 1, ("api", "502"): 1, ("frontend", "200"): 1, ("organisations", "404"): 1}


# -- every alert fires when it should and stays quiet when it should not -------------------------------


def _alert_names(rules: str) -> set[str]:
    return {rule["alert"] for group in yaml.safe_load(rules)["groups"] for rule in group["rules"]}


def _promtool_test(rules: str, directory: Path) -> subprocess.CompletedProcess:
    (directory / "holistix.yml").write_text(rules)
    for test_file in RULES_TESTS:
        shutil.copy(test_file, directory / test_file.name)
    return _run(_tool("promtool"), "test", "rules", *(test_file.name for test_file in RULES_TESTS), cwd=directory)


def test_every_alert_fires_and_stays_quiet_as_its_promtool_tests_say(valid_data, tmp_path):
    tested = _promtool_test(monitoring.render_rules(_settings(valid_data)), tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_firing_case_and_a_quiet_case(valid_data):
    cases = [
        case
        for test_file in RULES_TESTS
        for test in yaml.safe_load(test_file.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    alerts = _alert_names(monitoring.render_rules(validate_data(valid_data, environ={})))
    assert firing == alerts and quiet == alerts, (alerts - firing, alerts - quiet)


def test_the_promtool_tests_catch_a_changed_threshold(valid_data, tmp_path):
    """They would notice: disk alerts from 90 % make the 85 % case fail."""
    tested = _promtool_test(monitoring.render_rules(_settings(valid_data, alert_disk_used_percent=90)), tmp_path)
    assert tested.returncode != 0 and "alertname: DiskUsageHigh" in tested.stdout + tested.stderr


@pytest.mark.parametrize(
    ("alert", "metric"),
    [
        ("BackupTooOld", "holistix_backup_last_success_timestamp_seconds"),
        ("BackupRestoreTestTooOld", "holistix_backup_restore_test_last_success_timestamp_seconds"),
        ("BackupCheckFailed", "holistix_backup_check_success"),
        ("GatewayPoolExhausted", "holistix_gateway_pool_free_gateways"),
        ("GatewayContainerUnhealthy", "holistix_gateway_pool_unhealthy_containers"),
        ("GatewayPoolMetricsStale", "holistix_gateway_pool_last_update_timestamp_seconds"),
    ],
)
def test_alerts_read_the_metrics_the_host_helpers_write(valid_data, alert, metric):
    """The names the rules read are the names holistix-backup and holistix-gateway-pool write."""
    rules = yaml.safe_load(monitoring.render_rules(validate_data(valid_data, environ={})))
    expression = next(r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("alert") == alert)
    assert metric in expression
    written = (ROOT / "files" / "backups" / "holistix_backup.py").read_text() + json.dumps(
        host_script("gateway_pool/gateway_pool.py").metrics_text("prod", 3, 3, 0, (3, 3, 1))
    )
    assert metric in written


def test_gateway_pool_metrics_are_one_gauge_each_for_node_exporter():
    text = host_script("gateway_pool/gateway_pool.py").metrics_text("prod", 3, 2, 1, (3, 2, 0))
    samples = dict(re.findall(r'^(holistix_gateway_pool_\w+)\{environment="prod"\} (\d+)$', text, re.M))
    assert {name: int(value) for name, value in samples.items() if "timestamp" not in name} == {
        "holistix_gateway_pool_size": 3,
        "holistix_gateway_pool_running_containers": 2,
        "holistix_gateway_pool_unhealthy_containers": 1,
        "holistix_gateway_pool_registered_gateways": 3,
        "holistix_gateway_pool_ready_gateways": 2,
        "holistix_gateway_pool_free_gateways": 0,
    }
    assert text.count("# TYPE") == 7 and text.endswith("\n")


def test_the_pool_helper_reads_running_and_unhealthy_containers_from_docker(monkeypatch):
    pool = host_script("gateway_pool/gateway_pool.py")
    listing = [
        {"Names": "gw-pool-prod-1", "State": "running", "Status": "Up 2 hours (healthy)", "Labels": "a=b"},
        {"Names": "gw-pool-prod-2", "State": "running", "Status": "Up 2 hours (unhealthy)", "Labels": ""},
        {"Names": "gw-pool-prod-3", "State": "exited", "Status": "Exited (1) 5 minutes ago", "Labels": ""},
    ]

    def docker_ps(command, **_):
        assert command[:3] == ["docker", "ps", "-a"] and f"label={pool.POOL_LABEL}=prod" in command
        return subprocess.CompletedProcess(command, 0, "\n".join(json.dumps(c) for c in listing) + "\n", "")

    monkeypatch.setattr(pool.subprocess, "run", docker_ps)
    present = pool.actual("prod")
    assert {name: (c["running"], c["unhealthy"]) for name, c in present.items()} == {
        "gw-pool-prod-1": (True, False),
        "gw-pool-prod-2": (True, True),
        "gw-pool-prod-3": (False, False),
    }


# -- the dashboards: Prometheus's consoles behind nginx's front door ----------------------------------------

CONSOLES = {
    "index.html": "Overview",
    "host.html": "Host",
    "nginx.html": "nginx",
    "postgres.html": "PostgreSQL",
    "gateway-pool.html": "Gateway pool",
}


def test_prometheus_serves_the_consoles_the_module_installs(valid_data):
    arguments = monitoring.unit_arguments(_settings(valid_data))["prometheus"].split()
    assert f"--web.console.templates={monitoring.CONSOLES_DIR}" in arguments
    assert f"--web.console.libraries={monitoring.CONSOLE_LIBRARIES_DIR}" in arguments
    assert sorted(p.name for p in (ROOT / "files" / "monitoring" / "consoles").iterdir()) == sorted(CONSOLES)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


# What the exporters, the helpers and the rules write on a host, as the consoles read it: one
# series per metric (a second where a dashboard groups or filters), four samples a minute apart
# up to now, counters rising. PostgreSQL's shared-objects row has no datname and a NaN count.
SEEDED_SERIES = [
    ("up", {"job": "node", "instance": "127.0.0.1:9100"}, [1, 1, 1, 1]),
    ("up", {"job": "postgres", "instance": "127.0.0.1:9187"}, [1, 1, 1, 1]),
    ("ALERTS", {"alertname": "DiskUsageHigh", "alertstate": "firing", "severity": "warning"}, [1, 1, 1, 1]),
    ("ALERTS_FOR_STATE", {"alertname": "DiskUsageHigh"}, ["now-900"] * 4),
    ("node_cpu_seconds_total", {"job": "node", "cpu": "0", "mode": "idle"}, [100, 150, 200, 250]),
    ("node_cpu_seconds_total", {"job": "node", "cpu": "0", "mode": "user"}, [10, 20, 30, 40]),
    ("node_memory_MemTotal_bytes", {"job": "node"}, [8 * 2**30] * 4),
    ("node_memory_MemAvailable_bytes", {"job": "node"}, [6 * 2**30] * 4),
    ("node_filesystem_avail_bytes", {"job": "node", "mountpoint": "/", "fstype": "ext4"}, [40 * 2**30] * 4),
    ("node_filesystem_size_bytes", {"job": "node", "mountpoint": "/", "fstype": "ext4"}, [80 * 2**30] * 4),
    ("node_network_receive_bytes_total", {"job": "node", "device": "eth0"}, [0, 6000, 12000, 18000]),
    ("node_network_transmit_bytes_total", {"job": "node", "device": "eth0"}, [0, 3000, 6000, 9000]),
    ("node_boot_time_seconds", {"job": "node"}, ["now-86400"] * 4),
    ("node_load1", {"job": "node"}, [0.5, 0.6, 0.7, 0.8]),
    ("node_systemd_unit_state", {"job": "node", "name": "nginx.service", "state": "failed"}, [0, 0, 0, 0]),
    ("nginx_up", {"job": "nginx"}, [1, 1, 1, 1]),
    ("nginx_http_requests_total", {"job": "nginx"}, [0, 600, 1200, 1800]),
    ("nginx_connections_active", {"job": "nginx"}, [3, 4, 5, 6]),
    ("nginx_connections_waiting", {"job": "nginx"}, [1, 1, 2, 2]),
    ("holistix_nginx_responses_total", {"server": "api", "status": "200"}, [0, 570, 1140, 1710]),
    ("holistix_nginx_responses_total", {"server": "api", "status": "502"}, [0, 30, 60, 90]),
    ("probe_success", {"job": "https_api", "instance": "https://ganymede.app.example.com/health"}, [1, 1, 1, 1]),
    ("probe_ssl_earliest_cert_expiry", {"instance": "https://ganymede.app.example.com/health"}, ["now+5184000"] * 4),
    ("pg_up", {"job": "postgres"}, [1, 1, 1, 1]),
    ("pg_stat_database_numbackends", {"job": "postgres", "datname": "ganymede_prod"}, [3, 4, 4, 5]),
    ("pg_stat_database_numbackends", {"job": "postgres", "datname": ""}, ["NaN"] * 4),
    ("pg_settings_max_connections", {"job": "postgres"}, [100] * 4),
    ("pg_stat_database_deadlocks", {"job": "postgres", "datname": "ganymede_prod"}, [0, 0, 1, 1]),
    ("pg_stat_database_xact_commit", {"job": "postgres", "datname": "ganymede_prod"}, [0, 60, 120, 180]),
    ("pg_stat_database_xact_rollback", {"job": "postgres", "datname": "ganymede_prod"}, [0, 1, 2, 3]),
    ("pg_database_size_bytes", {"job": "postgres", "datname": "ganymede_prod"}, [9 * 2**20] * 4),
    ("holistix_gateway_pool_size", {}, [4] * 4),
    ("holistix_gateway_pool_running_containers", {}, [4] * 4),
    ("holistix_gateway_pool_registered_gateways", {}, [4] * 4),
    ("holistix_gateway_pool_ready_gateways", {}, [3] * 4),
    ("holistix_gateway_pool_free_gateways", {}, [2] * 4),
    ("holistix_gateway_pool_unhealthy_containers", {}, [1] * 4),
    ("holistix_gateway_pool_last_update_timestamp_seconds", {}, ["now-30"] * 4),
]


def _seeded_store(tmp_path: Path) -> Path:
    """A Prometheus store holding SEEDED_SERIES, made by promtool from OpenMetrics text."""
    now = int(time.time())

    def value(raw) -> str:
        if isinstance(raw, str) and raw.startswith("now"):
            return str(now + int(raw[3:]))
        return str(raw)

    lines = []
    for name, labels, values in SEEDED_SERIES:
        label_text = ",".join(f'{key}="{label}"' for key, label in labels.items())
        for step, raw in enumerate(values):
            lines.append(f"{name}{{{label_text}}} {value(raw)} {now - 60 * (len(values) - 1 - step)}")
    metrics = tmp_path / "seed.om"
    metrics.write_text("\n".join(lines) + "\n# EOF\n")
    store = tmp_path / "data"
    made = _run(_tool("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(metrics), str(store))
    assert made.returncode == 0, made.stdout + made.stderr
    return store


@pytest.fixture
def console_server(tmp_path):
    """The distribution's Prometheus (unpacked by scripts/monitoring-tools) on a free loopback
    port, with an empty store, serving a copy of the project's consoles: yields (base URL, the
    copy's consoles directory)."""
    yield from _console_server(tmp_path, tmp_path / "data")


@pytest.fixture
def seeded_console_server(tmp_path):
    """The same, its store holding SEEDED_SERIES."""
    yield from _console_server(tmp_path, _seeded_store(tmp_path))


def _console_server(tmp_path: Path, store: Path):
    consoles = tmp_path / "consoles"
    shutil.copytree(ROOT / "files" / "monitoring" / "consoles", consoles)
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    address = f"127.0.0.1:{_free_port()}"
    server = subprocess.Popen(
        [
            _tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={store}",
            f"--web.listen-address={address}",
            f"--web.console.templates={consoles}",
            f"--web.console.libraries={ROOT / 'files' / 'monitoring' / 'console_libraries'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if _get(f"http://{address}/-/ready")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("Prometheus did not get ready within 30 s")
        yield f"http://{address}", consoles
    finally:
        server.terminate()
        server.wait(10)


def test_every_dashboard_renders_in_prometheus(console_server):
    base, _ = console_server
    for page, title in CONSOLES.items():
        status, html = _get(f"{base}/consoles/{page}")
        assert status == 200, (page, html[:500])
        assert f'<h1 id="holistix-dashboard">{title}</h1>' in html, page
        # every menu entry, and the logs and traces views of the same front door
        for linked in [*CONSOLES, "/select/vmui/", "/jaeger/search", "/alerts"]:
            assert linked in html, (page, linked)
        # an empty store: each value is "-", never an error
        assert "error" not in html.lower(), page
        values = re.findall(r"<tr><td>[^<]*</td><td><a [^>]*>([^<]*)</a>", html)
        assert len(values) == html.count("data-expr") and set(values) <= {"-", "0"}, (page, values)


def test_every_dashboard_shows_every_number_when_the_metrics_are_there(seeded_console_server):
    base, _ = seeded_console_server
    pages = {page: _get(f"{base}/consoles/{page}") for page in CONSOLES}
    assert {page: status for page, (status, _) in pages.items()} == dict.fromkeys(CONSOLES, 200)
    for page, (_, html) in pages.items():
        values = dict(re.findall(r"<tr><td>([^<]*)</td><td><a [^>]*>([^<]*)</a>", html))
        assert len(values) == html.count("data-expr"), page
        # a number each (with its unit), never "-" or NaN
        shown = {label: value for label, value in values.items() if not re.match(r"^-?\d", value)}
        assert shown == {}, (page, shown)
    host, nginx_page, postgres, pool = (
        pages[p][1] for p in ("host.html", "nginx.html", "postgres.html", "gateway-pool.html")
    )
    index = pages["index.html"][1]
    assert "<tr><td>node</td><td>1 / 1</td></tr>" in index and "<tr><td>postgres</td><td>1 / 1</td></tr>" in index
    assert re.search(r"<tr><td>DiskUsageHigh</td><td>warning</td><td>1\dm", index), "the firing alert and for how long"
    assert re.search(r">Memory used</td><td><a [^>]*>25\.0 %</a>", host)
    assert re.search(r">Root filesystem used</td><td><a [^>]*>50\.0 %</a>", host)
    assert re.search(r">Up for</td><td><a [^>]*>1d 0h 0m", host)
    assert '<ul id="failed-units">\n\n<li>none</li>' in host
    # 90 502s in 1800 answers: 5 %
    assert re.search(r">Ganymede&#39;s 5xx \(5 min\)</td><td><a [^>]*>5\.0 %</a>", nginx_page)
    assert re.search(r"<td>https://ganymede\.app\.example\.com/health</td><td>yes</td><td>59d 23h", nginx_page)
    # the shared-objects row (no datname, NaN) is left out of the count
    assert re.search(r">Connections</td><td><a [^>]*>5</a>", postgres)
    assert "<tr><td>ganymede_prod</td><td>9MiB</td></tr>" in postgres
    for label, count in (("Ready gateways", 3), ("Free gateways", 2), ("Unhealthy containers", 1)):
        assert re.search(rf">{label}</td><td><a [^>]*>{count}</a>", pool), label


def test_a_broken_dashboard_is_caught_by_the_render_check(console_server):
    base, consoles = console_server
    (consoles / "host.html").write_text(
        (consoles / "host.html").read_text().replace('"holistix_row"', '"holistix_no_such_template"', 1)
    )
    status, html = _get(f"{base}/consoles/host.html")
    assert status != 200 and "holistix_no_such_template" in html


def test_the_front_door_asks_for_the_password_on_loopback_and_is_public_only_when_asked(valid_data):
    private = monitoring.render_dashboards_site(_settings(valid_data), (1, 26))
    public = monitoring.render_dashboards_site(_settings(valid_data, dashboards_public=True), (1, 26))

    assert private.count("server {") == 1 and "listen 127.0.0.1:3000;" in private
    assert "listen 443" not in private and "server_name" not in private
    assert public.count("server {") == 2 and "listen 127.0.0.1:3000;" in public
    assert "server_name dashboards.app.example.com;" in public and "listen 443 ssl;" in public
    for config in (private, public):
        # the password on every block (no location answers before it: no `return`), kept from the upstreams
        assert "return " not in config and "deny " not in config
        assert config.count("auth_basic_user_file /etc/nginx/holistix/prod/dashboards.htpasswd;") == config.count(
            "server {"
        )
        assert 'proxy_set_header Authorization "";' in config
        assert "proxy_pass http://127.0.0.1:9090;" in config
        assert "proxy_pass http://127.0.0.1:9428;" in config
        assert "proxy_pass http://127.0.0.1:16686;" in config
    for header, value in monitoring.DASHBOARDS_HEADERS.items():
        assert f'add_header {header} "{value}" always;' in public
    # a guessed password costs a request at the API's rate per address
    assert "limit_req zone=holistix_api burst=" in public.split("server_name")[1]


def test_the_front_door_refuses_what_would_change_prometheus(valid_data):
    config = monitoring.render_dashboards_site(_settings(valid_data), (1, 26))
    refused = re.search(r"location ~ (\S+) \{\s+root /nonexistent;", config).group(1)
    for path in (
        "/-/reload",
        "/-/quit",
        "/api/v1/admin/tsdb/delete_series",
        "/api/v1/write",
        "/api/v1/otlp/v1/metrics",
    ):
        assert re.search(refused, path), path
    for path in ("/api/v1/query", "/api/v1/query_range", "/consoles/host.html", "/graph", "/-/ready"):
        assert not re.search(refused, path), path


def test_jaeger_serves_its_ui_and_api_under_the_front_doors_path(valid_data):
    config = yaml.safe_load(monitoring.render_jaeger_config(_settings(valid_data)))
    assert config["extensions"]["jaeger_query"]["base_path"] == "/jaeger"

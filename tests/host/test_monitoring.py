"""monitoring: every component runs confined and listens on loopback only, Prometheus scrapes
every target and holds every rule, the probes see the served site and certificate, the pool's
and the backups' metrics are fresh, the journal's and nginx's lines reach the logs store, and
the dashboards show the host's live numbers behind the generated password."""

from __future__ import annotations

import json
import re
import secrets
import shlex
import time
import uuid

import pytest

from holistix_deploy import monitoring
from holistix_deploy.settings import COREDNS_LOOPBACK_PORTS, MONITORING_LOOPBACK_PORTS

PROMETHEUS = "http://127.0.0.1:9090"


def _api(host, path: str) -> dict:
    answer = json.loads(host.check_output(f"curl -sf -m 10 '{PROMETHEUS}/api/v1/{path}'"))
    assert answer["status"] == "success", answer
    return answer["data"]


def _query(host, expression: str) -> list[dict]:
    from urllib.parse import quote

    return _api(host, f"query?query={quote(expression)}")["result"]


@pytest.fixture(scope="module")
def targets(host) -> list[dict]:
    """Every scrape target, once each has been scraped (a converge may have just restarted one)."""
    deadline = time.monotonic() + 60
    while True:
        active = _api(host, "targets")["activeTargets"]
        if all(target["health"] != "unknown" for target in active) or time.monotonic() > deadline:
            return active
        time.sleep(2)


@pytest.mark.parametrize("component", monitoring.COMPONENTS, ids=lambda c: c.unit)
def test_component_runs_and_listens_on_loopback_only(host, settings, component):
    """Loopback only; Jaeger's OTLP receivers also on the Docker bridge's address, for the gateways."""
    service = host.service(component.unit)
    assert service.is_running and service.is_enabled
    main_pid = host.check_output(f"systemctl show -P MainPID {component.unit}")
    with host.sudo():
        listening = host.check_output(f"ss -H -ltnp | grep 'pid={main_pid},' | awk '{{print $4}}'").split()
    assert sorted(listening) == sorted(monitoring.listen_addresses(component, settings)), listening


@pytest.mark.parametrize("component", monitoring.COMPONENTS, ids=lambda c: c.unit)
def test_component_is_not_reachable_on_the_public_address(host, settings, component):
    """Bound to loopback, not merely firewalled: the public address refuses even from the host itself."""
    refused = host.run(f"curl -s -m 5 -o /dev/null http://{settings.public_ipv4}:{component.port}/")
    assert refused.rc == 7, f"{component.unit} answered on {settings.public_ipv4}:{component.port}"


@pytest.mark.parametrize("component", monitoring.COMPONENTS, ids=lambda c: c.unit)
def test_component_is_sandboxed(host, component):
    with host.sudo():
        exposure = host.check_output(f"systemd-analyze security --no-pager {component.unit}.service | tail -1")
    score = float(exposure.split("level for")[1].split(":")[1].split()[0])
    # the packages' own units score 9.2 ("UNSAFE") without the drop-in
    assert score <= 2.0, exposure


def test_every_target_is_up(targets):
    jobs = {target["labels"]["job"]: target for target in targets}
    expected = {component.job for component in monitoring.COMPONENTS} | {
        "coredns",
        "https_frontend",
        "https_api",
        "dns",
    }
    assert set(jobs) == expected
    down = {job: target["lastError"] for job, target in jobs.items() if target["health"] != "up"}
    assert down == {}


def test_coredns_metrics_are_scraped_on_loopback(targets):
    coredns = next(target for target in targets if target["labels"]["job"] == "coredns")
    assert coredns["scrapeUrl"] == f"http://127.0.0.1:{COREDNS_LOOPBACK_PORTS['metrics']}/metrics"


def test_every_alert_rule_is_loaded_and_healthy(host, settings):
    rules = {rule["name"]: rule for group in _api(host, "rules")["groups"] for rule in group["rules"]}
    expected = {
        line.split(": ", 1)[1] for line in monitoring.render_rules(settings).splitlines() if "- alert: " in line
    }
    assert set(rules) == expected
    assert {name for name, rule in rules.items() if rule["health"] != "ok"} == set()


def test_prometheus_keeps_what_the_settings_say(host, settings):
    flags = _api(host, "status/flags")
    assert flags["storage.tsdb.retention.time"] == f"{settings.monitoring_retention_days}d"
    # Prometheus's units are binary: 4GB is 4 GiB
    assert flags["storage.tsdb.retention.size"] == f"{settings.monitoring_retention_size}iB"
    assert flags["web.listen-address"] == "127.0.0.1:9090"


def test_the_live_configuration_passes_its_checkers(host):
    with host.sudo():
        for command in (
            f"promtool check config {monitoring.PROMETHEUS_CONFIG}",
            f"promtool check rules --lint=all --lint-fatal {monitoring.RULES_FILE}",
            f"amtool check-config {monitoring.ALERTMANAGER_CONFIG}",
        ):
            checked = host.run(command)
            assert checked.rc == 0, f"{command}: {checked.stdout}{checked.stderr}"


def test_the_probes_see_the_site_the_api_and_dns(host, settings):
    for job in ("https_frontend", "https_api", "dns"):
        assert [r["value"][1] for r in _query(host, f'probe_success{{job="{job}"}}')] == ["1"], job
    # the certificate nginx serves, as the alert reads it
    expiry = _query(host, "min(probe_ssl_earliest_cert_expiry) - time()")
    assert float(expiry[0]["value"][1]) > settings.alert_certificate_days * 86400


def test_ganymedes_answers_are_counted_from_the_access_log(host, settings):
    def counted() -> float:
        """mtail's own count (Prometheus may still hold a value from before a restart reset it)."""
        metrics = host.check_output("curl -sf -m 5 http://127.0.0.1:3903/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("holistix_nginx_responses_total{") and 'server="api"' in line
        )

    before = counted()
    # one request through nginx, as a browser's (the probes' own requests are not counted)
    host.run(
        f"curl -sk -o /dev/null --resolve ganymede.{settings.domain}:443:127.0.0.1 https://ganymede.{settings.domain}/"
    )
    deadline = time.monotonic() + 10
    while counted() <= before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert counted() > before
    # ... and Prometheus scrapes the count
    deadline = time.monotonic() + 3 * settings.monitoring_scrape_interval_seconds
    while not _query(host, 'holistix_nginx_responses_total{server="api"}') and time.monotonic() < deadline:
        time.sleep(1)
    assert _query(host, 'holistix_nginx_responses_total{server="api"}')


# as our configuration scrapes node_exporter: for five minutes after the first install Prometheus
# may still hold what the package's default configuration scraped (localhost:9100) before ours
# was loaded (a reload leaves no staleness marker for a dropped target)
NODE = '{job="node",instance="127.0.0.1:9100"}'


def test_the_gateway_pools_metrics_are_fresh(host, settings):
    assert host.service(f"holistix-gateway-pool-metrics@{settings.environment}.timer").is_running
    size = _query(host, f"holistix_gateway_pool_size{NODE}")
    assert [r["value"][1] for r in size] == [str(settings.gateway_pool_size)]
    running = _query(host, f"holistix_gateway_pool_running_containers{NODE}")
    assert [r["value"][1] for r in running] == [str(settings.gateway_pool_size)]
    age = _query(host, f"time() - holistix_gateway_pool_last_update_timestamp_seconds{NODE}")
    assert float(age[0]["value"][1]) < 150


def test_the_backups_metrics_reach_prometheus(host):
    last = _query(host, 'holistix_backup_last_success_timestamp_seconds{repository="local"}')
    assert last and time.time() - float(last[0]["value"][1]) < 26 * 3600


# -- logs: the journal and nginx's logs reach the logs store --------------------------------------------

LOGS = "http://127.0.0.1:9428"


def _logs_matching(host, word: str) -> list[dict]:
    """The log entries VictoriaLogs holds with this word in them (LogsQL, its HTTP API)."""
    answer = host.check_output(f"curl -sf -m 10 {LOGS}/select/logsql/query --data-urlencode 'query=\"{word}\"'")
    return [json.loads(line) for line in answer.splitlines() if line.strip()]


def _eventually_logged(host, word: str, seconds: float = 30) -> list[dict]:
    deadline = time.monotonic() + seconds
    while not (found := _logs_matching(host, word)) and time.monotonic() < deadline:
        time.sleep(1)
    return found


def test_a_line_written_to_the_journal_is_found_in_the_logs_store(host):
    marker = f"holistix-host-suite-{uuid.uuid4().hex}"
    host.run(f"logger --tag holistix-host-suite {marker}")
    found = [
        entry for entry in _eventually_logged(host, marker) if entry.get("SYSLOG_IDENTIFIER") == "holistix-host-suite"
    ]
    assert [entry["_msg"] for entry in found] == [marker]
    assert found[0]["_HOSTNAME"] == host.check_output("hostname")


def test_a_request_nginx_logged_is_found_in_the_logs_store(host, settings):
    marker = f"holistix-host-suite-{uuid.uuid4().hex}"
    host.run(f"curl -sk -o /dev/null --resolve {settings.domain}:443:127.0.0.1 https://{settings.domain}/{marker}")
    found = _eventually_logged(host, marker)
    assert [entry["file"] for entry in found] == [f"/var/log/nginx/{settings.environment}-frontend.access.log"]
    assert f"GET /{marker} " in found[0]["_msg"]


def test_the_logs_store_keeps_what_the_settings_say(host, settings):
    flags = dict(
        line.lstrip("-").split("=", 1) for line in host.check_output(f"curl -sf -m 5 {LOGS}/flags").splitlines()
    )
    assert flags["retentionPeriod"] == f'"{settings.logs_retention_days}d"'
    assert flags["retention.maxDiskSpaceUsageBytes"] == f'"{monitoring.size_in_bytes(settings.logs_retention_size)}"'


def test_the_journal_uploader_runs_confined_and_receives_nothing(host):
    uploader = host.service("systemd-journal-upload")
    assert uploader.is_running and uploader.is_enabled
    with host.sudo():
        exposure = host.check_output("systemd-analyze security --no-pager systemd-journal-upload.service | tail -1")
        # the package's receiving side (19532) and gateway (19531) stay off
        listeners = host.check_output("ss -H -ltn '( sport = :19531 or sport = :19532 )'")
    assert float(exposure.split("level for")[1].split(":")[1].split()[0]) <= 2.0, exposure
    assert listeners == ""


def test_the_release_binaries_are_the_pinned_release(host, settings):
    for binary in ("victoria-logs", "vlagent", "vlogscli"):
        version = host.check_output(f"/usr/local/bin/{binary} -version")
        assert f"-tags-v{settings.victorialogs_version}-" in version, (binary, version)


# -- traces: Jaeger takes OTLP from Ganymede (loopback) and the gateways (the Docker bridge) ------------

# under the dashboards front door's path (jaeger_query base_path)
JAEGER = f"http://127.0.0.1:16686{monitoring.JAEGER_BASE_PATH}"


def _span(service: str) -> tuple[str, str]:
    """(trace id, OTLP/HTTP JSON body) of one finished span from ``service``."""
    trace_id, now = secrets.token_hex(16), time.time_ns()
    span = {
        "traceId": trace_id,
        "spanId": secrets.token_hex(8),
        "name": "holistix-host-suite",
        "kind": 1,
        "startTimeUnixNano": str(now),
        "endTimeUnixNano": str(now + 1_000_000),
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": {"name": "probe"}, "spans": [span]}]}]}
    return trace_id, json.dumps(body)


def _trace_services(host, trace_id: str, seconds: float = 20) -> set[str]:
    """The services of a trace Jaeger holds, once it has it."""
    deadline = time.monotonic() + seconds
    while True:
        answer = host.run(f"curl -sf -m 5 {JAEGER}/api/traces/{trace_id}")
        if answer.rc == 0 and json.loads(answer.stdout)["data"]:
            return {process["serviceName"] for process in json.loads(answer.stdout)["data"][0]["processes"].values()}
        if time.monotonic() > deadline:
            return set()
        time.sleep(1)


def test_ganymede_is_pointed_at_the_otlp_endpoint_on_loopback(host, settings):
    main_pid = host.check_output(f"systemctl show -P MainPID ganymede@{settings.environment}")
    with host.sudo():
        variables = host.check_output(f"tr '\\0' '\\n' < /proc/{main_pid}/environ | grep '^OTLP_ENDPOINT_'")
    assert sorted(variables.splitlines()) == [
        "OTLP_ENDPOINT_GRPC=http://127.0.0.1:4317",
        "OTLP_ENDPOINT_HTTP=http://127.0.0.1:4318",
    ]


def test_a_span_sent_to_the_loopback_endpoint_is_found_in_jaeger(host, settings):
    trace_id, body = _span(f"ganymede-{settings.environment}")
    sent = host.run(
        f"curl -sf -m 5 -H 'Content-Type: application/json' --data-binary {shlex.quote(body)}"
        " http://127.0.0.1:4318/v1/traces"
    )
    assert sent.rc == 0, sent.stderr
    assert _trace_services(host, trace_id) == {f"ganymede-{settings.environment}"}


def test_a_span_a_gateway_sends_to_its_otlp_endpoint_is_found_in_jaeger(host, settings):
    """From inside a pool container, to the OTLP_ENDPOINT_HTTP it was given (the bridge's address,
    through the firewall's docker0 rule)."""
    if settings.gateway_image is None:
        pytest.skip("no gateway image in the settings: the pool has no containers to send from")
    container = f"gw-pool-{settings.environment}-1"
    trace_id, body = _span(f"gateway-{container}")
    with host.sudo():
        sent = host.run(
            f"docker exec {container} sh -c "
            + shlex.quote(
                f"printf %s {shlex.quote(body)} > /tmp/span.json && wget -q -O /dev/null"
                " --header=Content-Type:application/json --post-file=/tmp/span.json $OTLP_ENDPOINT_HTTP/v1/traces"
            )
        )
    assert sent.rc == 0, sent.stderr
    assert _trace_services(host, trace_id) == {f"gateway-{container}"}


def test_otlp_logs_reach_the_logs_store(host, settings):
    marker = f"holistix-host-suite-{uuid.uuid4().hex}"
    record = {"timeUnixNano": str(time.time_ns()), "severityText": "INFO", "body": {"stringValue": marker}}
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": f"ganymede-{settings.environment}"}}]}
    body = json.dumps({"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": [record]}]}]})
    sent = host.run(
        f"curl -sf -m 5 -H 'Content-Type: application/json' --data-binary {shlex.quote(body)}"
        " http://127.0.0.1:4318/v1/logs"
    )
    assert sent.rc == 0, sent.stderr
    found = _eventually_logged(host, marker)
    assert [(entry["_msg"], entry["service.name"]) for entry in found] == [(marker, f"ganymede-{settings.environment}")]


def test_jaeger_is_the_pinned_release(host, settings):
    version = host.check_output(f"{monitoring.JAEGER_BINARY} version 2>/dev/null")
    assert json.loads(version)["gitVersion"] == f"v{settings.jaeger_version}"


# -- the dashboards: Prometheus's consoles, the logs and the traces behind one password ------------------

FRONT_DOOR = f"http://127.0.0.1:{MONITORING_LOOPBACK_PORTS['dashboards']}"
DASHBOARDS = ["index.html", "host.html", "nginx.html", "postgres.html", "gateway-pool.html"]


def _through_front_door(host, settings, path: str, password: str = "generated", method: str = "GET"):
    """(status, body) of a request to the front door on loopback, with the generated password
    (read on the host, given to curl on stdin: never on a command line), a wrong one, or none."""
    credentials = {
        "generated": f'"$(cat {monitoring.dashboards_password_file(settings)})"',
        "wrong": "not-the-password",
    }
    # -L: Debian 12's Prometheus sends /graph on to /classic/graph
    command = f"curl -sL -m 10 -X {method} -w '\\n%{{http_code}}' '{FRONT_DOOR}{path}'"
    if password in credentials:
        command = f"printf 'user = \"{monitoring.DASHBOARDS_USER}:%s\"\\n' {credentials[password]} | {command} -K -"
    with host.sudo():
        answer = host.check_output(f"sh -c {shlex.quote(command)}")
    body, _, status = answer.rpartition("\n")
    return int(status), body


def _cells(html: str) -> dict[str, str]:
    """A dashboard's summary table: {row label: the value shown}."""
    return dict(re.findall(r"<tr><td>([^<]*)</td><td><a [^>]*>([^<]*)</a></td></tr>", html))


def test_the_dashboards_password_is_generated_on_the_host_and_kept_from_everyone(host, settings):
    password = host.file(monitoring.dashboards_password_file(settings))
    user_file = host.file(monitoring.dashboards_htpasswd(settings))
    with host.sudo():
        assert (password.user, password.group, password.mode) == ("root", "root", 0o600)
        assert password.size >= 32
        assert (user_file.user, user_file.group, user_file.mode) == ("root", "www-data", 0o640)
        lines = user_file.content_string.splitlines()
    # a SHA-512 crypt hash, never the password itself
    assert len(lines) == 1 and lines[0].startswith(f"{monitoring.DASHBOARDS_USER}:$6$"), lines[0][:12]


@pytest.mark.parametrize(
    "path", ["/", *[f"/consoles/{page}" for page in DASHBOARDS], "/graph", "/select/vmui/", "/jaeger/"]
)
def test_nothing_behind_the_front_door_answers_without_the_password(host, settings, path):
    assert _through_front_door(host, settings, path, password="none")[0] == 401
    assert _through_front_door(host, settings, path, password="wrong")[0] == 401
    assert _through_front_door(host, settings, path)[0] == 200


def test_the_dashboards_show_the_hosts_live_numbers(host, settings):
    pages = {page: _through_front_door(host, settings, f"/consoles/{page}") for page in DASHBOARDS}
    assert {page: status for page, (status, _) in pages.items()} == dict.fromkeys(DASHBOARDS, 200)
    assert _cells(pages["host.html"][1])["CPUs"] == host.check_output("nproc")
    assert _cells(pages["gateway-pool.html"][1])["Pool size"] == str(settings.gateway_pool_size)
    assert _cells(pages["postgres.html"][1])["PostgreSQL up"] == "1"
    assert f"<tr><td>{settings.database_name}</td>" in pages["postgres.html"][1]
    assert _cells(pages["nginx.html"][1])["nginx up"] == "1"
    # the overview: every scrape job, each with all its targets up
    jobs = {
        job: (up, of)
        for job, up, of in re.findall(r"<tr><td>(\w+)</td><td>(\d+) / (\d+)</td></tr>", pages["index.html"][1])
    }
    assert {"node", "postgres", "nginx", "jaeger", "victorialogs", "coredns"} <= set(jobs), jobs
    assert all(up == of for up, of in jobs.values()), jobs


def test_every_script_and_style_the_dashboards_load_is_served(host, settings):
    """The graphs need the distribution's classic UI libraries at the paths the frame names."""
    _, page = _through_front_door(host, settings, "/consoles/host.html")
    assets = re.findall(r'(?:src|href)="(/classic/static/[^"]+)"', page)
    assert len(assets) >= 8, assets
    missing = {asset: status for asset in assets if (status := _through_front_door(host, settings, asset)[0]) != 200}
    assert missing == {}


def test_logs_and_traces_are_read_through_the_front_door(host, settings):
    marker = f"holistix-host-suite-{uuid.uuid4().hex}"
    host.run(f"logger --tag holistix-host-suite {marker}")
    assert _eventually_logged(host, marker)
    status, found = _through_front_door(host, settings, f"/select/logsql/query?query=%22{marker}%22")
    assert status == 200 and marker in found

    trace_id, body = _span(f"ganymede-{settings.environment}")
    host.run(
        f"curl -sf -m 5 -H 'Content-Type: application/json' --data-binary {shlex.quote(body)}"
        " http://127.0.0.1:4318/v1/traces"
    )
    assert _trace_services(host, trace_id)
    status, trace = _through_front_door(host, settings, f"/jaeger/api/traces/{trace_id}")
    assert status == 200 and json.loads(trace)["data"][0]["traceID"] == trace_id


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/-/reload"), ("POST", "/-/quit"), ("POST", "/api/v1/admin/tsdb/snapshot"), ("POST", "/insert/jsonline")],
)
def test_the_front_door_changes_nothing(host, settings, method, path):
    """Without the password, a stranger learns nothing (401); with it: no reload, no shutdown, no
    admin API, no writing into the logs store."""
    assert _through_front_door(host, settings, path, password="none", method=method)[0] == 401
    status, _ = _through_front_door(host, settings, path, method=method)
    assert status in (404, 405), (path, status)

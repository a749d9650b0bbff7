"""gateway_pool without a host: the pool's plan, what converge does when it scales, and how
secrets reach `docker run` (never in its arguments)."""

from __future__ import annotations

import pytest

from .helpers import host_script


@pytest.fixture
def pool():
    return host_script("gateway_pool/gateway_pool.py")


PLAN = {
    "environment": "prod",
    "size": 3,
    "image": "holistix-gateway:1.4.2",
    "http_port_base": 7100,
    "vpn_port_base": 49100,
    "bridge_ip": "172.17.0.1",
    "public_ip": "203.0.113.10",
    "build_server_port": 8090,
    "domain": "app.example.com",
    "memory": "1g",
    "cpus": 1.0,
    "pids": 512,
    "otlp": {"http": "http://172.17.0.1:4318", "grpc": "http://172.17.0.1:4317"},
}


def _present(pool, plan: dict, running: bool = True) -> dict:
    return {name: {"spec": spec["sha256"], "running": running} for name, spec in pool.desired(plan).items()}


def test_each_gateway_gets_its_ports_on_the_bridge_and_the_vpn_port_public(pool):
    wanted = pool.desired(PLAN)
    assert list(wanted) == ["gw-pool-prod-1", "gw-pool-prod-2", "gw-pool-prod-3"]
    assert wanted["gw-pool-prod-2"]["publish"] == ["172.17.0.1:7101:7101/tcp", "49101:49101/udp"]
    assert wanted["gw-pool-prod-2"]["nginx_upstream"] == "172.17.0.1:7101"


def test_each_gateway_sends_its_telemetry_to_the_otlp_endpoint_on_the_bridge(pool):
    environment = pool.desired(PLAN)["gw-pool-prod-1"]["environment"]
    assert environment["OTLP_ENDPOINT_HTTP"] == "http://172.17.0.1:4318"
    assert environment["OTLP_ENDPOINT_GRPC"] == "http://172.17.0.1:4317"
    assert environment["OTEL_SERVICE_NAME"] == "gateway-gw-pool-prod-1"


def test_an_unchanged_pool_needs_nothing(pool):
    names = set(pool.desired(PLAN))
    assert pool.actions(pool.desired(PLAN), _present(pool, PLAN), names) == []


def test_scaling_up_registers_and_creates_only_the_new_ones(pool):
    bigger = {**PLAN, "size": 5}
    steps = pool.actions(pool.desired(bigger), _present(pool, PLAN), set(pool.desired(PLAN)))
    assert steps == [
        ("register", "gw-pool-prod-4"),
        ("create", "gw-pool-prod-4"),
        ("register", "gw-pool-prod-5"),
        ("create", "gw-pool-prod-5"),
    ]


def test_scaling_down_removes_and_deregisters_the_highest_numbered(pool):
    bigger = {**PLAN, "size": 5}
    steps = pool.actions(pool.desired({**PLAN, "size": 2}), _present(pool, bigger), set(pool.desired(bigger)))
    assert steps == [
        ("remove", "gw-pool-prod-5"),
        ("remove", "gw-pool-prod-4"),
        ("remove", "gw-pool-prod-3"),
        ("deregister", "gw-pool-prod-5"),
        ("deregister", "gw-pool-prod-4"),
        ("deregister", "gw-pool-prod-3"),
    ]


def test_a_changed_spec_recreates_and_a_stopped_container_is_started(pool):
    present = _present(pool, PLAN)
    present["gw-pool-prod-1"]["running"] = False
    steps = pool.actions(pool.desired({**PLAN, "memory": "2g"}), present, set(pool.desired(PLAN)))
    assert steps == [("recreate", "gw-pool-prod-1"), ("recreate", "gw-pool-prod-2"), ("recreate", "gw-pool-prod-3")]
    steps = pool.actions(pool.desired(PLAN), present, set(pool.desired(PLAN)))
    assert steps == [("start", "gw-pool-prod-1")]


def test_docker_run_has_the_contracts_flags_and_limits_but_no_secret(pool):
    spec = pool.desired(PLAN)["gw-pool-prod-1"]
    arguments = pool.run_arguments("gw-pool-prod-1", spec, "42", "prod")
    text = " ".join(arguments)
    for flag in ("--restart no", "--cap-add NET_ADMIN", "--device /dev/net/tun", "--dns 172.17.0.1",
                 "--memory 1g", "--pids-limit 512", "--security-opt no-new-privileges",
                 "--label environment=prod", "--label gateway_id=42", "-p 172.17.0.1:7100:7100/tcp"):  # fmt: skip
        assert flag in text, flag
    assert "--health-cmd" in arguments and "/collab/ping" in text
    assert arguments[arguments.index("GATEWAY_TOKEN") - 1] == "-e"  # a name: docker takes the value from its env
    assert "GATEWAY_TOKEN=" not in text and "JWT_PUBLIC_KEY=" not in text


def test_the_environment_file_reads_back_what_was_written(pool, tmp_path):
    quoted = host_script("ganymede/ganymede_env.py").quoted
    values = {
        "PG_PASSWORD": "p'a\"s$s`\\w",
        "JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----",
    }
    path = tmp_path / "ganymede.env"
    path.write_text("# header\n" + "".join(f"{name}={quoted(value)}\n" for name, value in values.items()))
    assert pool.environment_file(path) == values

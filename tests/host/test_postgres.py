"""postgres: a loopback-only, TLS, SCRAM-only PostgreSQL whose application role can do its
work and nothing more, with every file of the platform's database/ directory applied once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from holistix_deploy import postgres as policy
from holistix_deploy import tls


@pytest.fixture(scope="module")
def sql(host):
    """Run SQL as the postgres OS user (peer authentication), rows as text."""

    def run(query: str, database: str = "postgres") -> str:
        with host.sudo():
            return host.check_output(f"runuser -u postgres -- psql -X -A -t -q -d {database} -c {_quote(query)}")

    return run


@pytest.fixture(scope="module")
def as_app(host, settings):
    """Run SQL as the application role over TLS on loopback, with its generated password
    (passed in the environment of psql, never on its command line)."""

    def run(query: str, database: str | None = None, sslmode: str = "require"):
        conninfo = (
            f"host=127.0.0.1 dbname={database or settings.database_name} user={settings.database_role} "
            f"sslmode={sslmode}"
        )
        command = (
            f'PGPASSWORD="$(cat {settings.secrets_dir}/database_password)" psql -X -A -t -q '
            f"-v ON_ERROR_STOP=1 {_quote(conninfo)} -c {_quote(query)}"
        )
        with host.sudo():
            return host.run(f"sh -c {_quote(command)}")

    return run


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_postgresql_runs_and_starts_at_boot(host, sql):
    version = sql("SHOW server_version_num")[:2]
    unit = host.service(f"postgresql@{version}-main")
    assert unit.is_running and unit.is_enabled


def test_postgresql_listens_on_loopback_only(host):
    with host.sudo():
        listeners = host.check_output("ss -Htln 'sport = :5432'").splitlines()
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in listeners}
    assert addresses and addresses <= {"127.0.0.1", "[::1]"}


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("password_encryption", "scram-sha-256"),
        ("ssl", "on"),
        ("ssl_min_protocol_version", "TLSv1.2"),
        ("ssl_ciphers", tls.MOZILLA_INTERMEDIATE_CIPHERS),
        ("log_connections", "on"),
        ("log_disconnections", "on"),
    ],
)
def test_server_setting(sql, parameter, value):
    assert sql(f"SHOW {parameter}") == value


def test_memory_settings_follow_the_documented_formula(host, sql, settings):
    cpus = int(host.check_output("getconf _NPROCESSORS_ONLN"))
    memory_mb = settings.postgres_memory_mb or int(host.check_output("free -m | awk '/^Mem:/ {print $2}'"))
    wanted = policy.tuning(memory_mb, cpus, settings.postgres_max_connections, settings.postgres_overrides)
    effective = {parameter: sql(f"SHOW {parameter}") for parameter in wanted}
    assert {k: _normalised(v) for k, v in effective.items()} == {k: _normalised(v) for k, v in wanted.items()}


def _normalised(value: str) -> str:
    """PostgreSQL shows 512MB as "512MB" but 2048MB as "2GB": compare sizes in kB."""
    for unit, factor in (("kB", 1), ("MB", 1024), ("GB", 1024 * 1024)):
        if value.endswith(unit) and value[: -len(unit)].isdigit():
            return f"{int(value[: -len(unit)]) * factor}kB"
    return value


def test_pg_hba_has_no_trust_md5_or_password_rule(sql):
    methods = set(sql("SELECT DISTINCT auth_method FROM pg_hba_file_rules").split())
    assert methods.isdisjoint({"trust", "md5", "password"})
    assert methods <= {"peer", "scram-sha-256", "reject"}


def test_pg_hba_rejects_everything_it_does_not_allow(sql):
    last_rules = sql("SELECT type, auth_method FROM pg_hba_file_rules ORDER BY line_number DESC LIMIT 2")
    assert last_rules.splitlines() == ["host|reject", "local|reject"]


def test_no_md5_password_hashes(sql):
    assert sql("SELECT count(*) FROM pg_authid WHERE rolpassword LIKE 'md5%'") == "0"


def test_app_role_can_log_in_and_do_nothing_more(sql, settings):
    attributes = sql(
        "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolconnlimit "
        f"FROM pg_roles WHERE rolname = '{settings.database_role}'"
    )
    assert attributes == f"t|f|f|f|f|f|{settings.postgres_app_connection_limit}"


def test_database_is_utf8_and_closed_to_other_roles(sql, settings):
    row = sql(
        f"SELECT pg_encoding_to_char(encoding), datacl FROM pg_database WHERE datname = '{settings.database_name}'"
    )
    encoding, acl = row.split("|", 1)
    entries = [entry for entry in acl.strip("{}").split(",") if entry]
    assert encoding == "UTF8"
    # an empty ACL is PostgreSQL's default, in which PUBLIC may connect
    assert entries, "the database still has the default ACL (PUBLIC may connect)"
    assert not any(entry.startswith("=") for entry in entries), "PUBLIC may not connect"
    role_entries = [
        entry.split("=")[1].split("/")[0] for entry in entries if entry.startswith(f"{settings.database_role}=")
    ]
    assert role_entries and "c" in role_entries[0], "the app role may connect"


def test_app_role_does_its_work_in_a_transaction(as_app):
    work = as_app(
        "BEGIN; INSERT INTO gateways (hostname) VALUES ('gw-test'); UPDATE gateways SET ready = true "
        "WHERE hostname = 'gw-test'; CALL proc_gateway_ready('gw-test-2'); SELECT total FROM func_gateway_stats(); "
        "DELETE FROM gateways WHERE hostname LIKE 'gw-test%'; ROLLBACK;"
    )
    assert work.rc == 0, work.stderr


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("CREATE TABLE intruder (id int)", "permission denied for schema public"),
        ("DROP TABLE gateways", "must be owner of table gateways"),
        ("CREATE ROLE intruder LOGIN", "permission denied to create role"),
        # PostgreSQL 15 says "must be superuser ...", 16 and later "permission denied ..."
        ("ALTER ROLE CURRENT_USER SUPERUSER", "permission denied|must be superuser"),
    ],
)
def test_app_role_cannot_change_the_schema_or_roles(as_app, statement, refusal):
    result = as_app(statement)
    assert result.rc != 0 and any(words in result.stderr for words in refusal.split("|")), result.stderr


def test_app_role_cannot_reach_another_database(as_app):
    result = as_app("SELECT 1", database="postgres")
    assert result.rc != 0
    assert "no pg_hba.conf entry" in result.stderr or "rejects connection" in result.stderr, result.stderr


def test_app_role_cannot_connect_without_tls(as_app):
    result = as_app("SELECT 1", sslmode="disable")
    assert result.rc != 0
    assert "rejects connection" in result.stderr or "no pg_hba.conf entry" in result.stderr, result.stderr


def test_server_certificate_is_valid_for_a_month_and_its_key_private(host):
    with host.sudo():
        cluster_dir = host.check_output("ls -d /etc/postgresql/*/main | sort -V | tail -1")
        key = host.file(f"{cluster_dir}/holistix-server.key")
        assert (key.user, key.mode) == ("postgres", 0o600)
        ca_key = host.file(f"{cluster_dir}/holistix-ca.key")
        assert (ca_key.user, ca_key.mode) == ("root", 0o600)
        assert host.run(f"openssl x509 -checkend 2592000 -noout -in {cluster_dir}/holistix-server.crt").rc == 0
        verify = host.run(f"openssl verify -CAfile {cluster_dir}/holistix-ca.crt {cluster_dir}/holistix-server.crt")
    assert verify.rc == 0, verify.stdout


def test_every_file_of_the_database_directory_is_applied_once(sql, settings):
    if settings.postgres_database_dir is None:
        pytest.skip("this host's inventory applies no database/ directory (postgres_database_dir is None)")
    ledger = dict(
        line.split("|", 1)
        for line in sql("SELECT path, sha256 FROM holistix.schema_migrations", settings.database_name).splitlines()
    )
    directory = Path(settings.postgres_database_dir)
    wanted = {
        f"{part}/{file.name}": hashlib.sha256(file.read_bytes()).hexdigest()
        for part in ("schema", "migrations", "procedures")
        for file in sorted((directory / part).glob("*.sql"))
    }
    assert ledger == wanted


def test_app_role_cannot_read_the_migration_ledger(as_app):
    result = as_app("SELECT * FROM holistix.schema_migrations")
    assert result.rc != 0 and "permission denied" in result.stderr

"""postgres: the distribution's PostgreSQL, hardened, with the environment's database and a
least-privilege application role, and the platform's schema applied safely.

Manages: the postgresql package; a conf.d drop-in (loopback only, scram-sha-256, TLS with a
certificate this module makes and renews, connection logging, memory and parallelism sized
from the host); pg_hba.conf (peer for postgres, hostssl + scram for the app role, reject for
the rest); database ganymede_<env> (UTF-8, owned by postgres) and role ganymede_app_<env>
(login only, connection limit, password generated on the host); the app role's grants; the
migration helper and, when postgres_database_dir is set, the platform's schema/migrations/
procedures applied once each.

Reads: environment, postgres_* settings. Reloads or restarts: the cluster (restart only when a
changed setting needs it).

    pyinfra inventories/prod.py deploys/postgres.py
"""

from pyinfra import host
from pyinfra.facts.hardware import Cpus, Memory
from pyinfra.operations import apt, files, postgres, server, systemd

from holistix_deploy import monitoring, tls
from holistix_deploy import postgres as policy
from holistix_deploy.facts import CertificateState, PostgresMajorVersion
from holistix_deploy.operations import (
    MIGRATE_HELPER,
    ROLE_PASSWORD_HELPER,
    database_migrations,
    generated_secret,
    install_helpers,
    postgres_app_grants,
    postgres_config,
    postgres_login_role,
    postgres_role_password,
)
from holistix_deploy.settings import load_settings
from holistix_deploy.templating import render

settings = load_settings(host)
version = host.get_fact(PostgresMajorVersion)
if version is None:
    raise RuntimeError("no PostgreSQL version known for this host: run deploys/base.py first (it refreshes apt)")
cluster_dir = f"/etc/postgresql/{version}/main"
cluster_unit = f"postgresql@{version}-main"
database, role = settings.database_name, settings.database_role

apt.packages(
    name=f"Ensure PostgreSQL {version} is installed",
    packages=["postgresql"],
    update=True,
    cache_time=settings.apt_cache_valid_seconds,
    no_recommends=True,
)

# -- TLS for loopback clients: a host-made CA and a server certificate renewed 30 days early -------
key_file, cert_file = f"{cluster_dir}/holistix-server.key", f"{cluster_dir}/holistix-server.crt"
generated_secret(
    name="Ensure PostgreSQL's TLS key exists",
    path=key_file,
    command="openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1",
    directory=cluster_dir,
    user="postgres",
    group="postgres",
)
install_helpers(
    {
        tls.CERTIFICATE_HELPER: "tls/host_certificates.sh",
        ROLE_PASSWORD_HELPER: "postgres/role_password.py",
        MIGRATE_HELPER: "postgres/db_migrate.py",
    }
)
certificate = server.shell(
    name="Ensure PostgreSQL's certificate (signed by the host's loopback CA) is valid for 30 more days",
    commands=[
        f"{tls.CERTIFICATE_HELPER} {cluster_dir} 'PostgreSQL loopback CA' {key_file} {cert_file}"
        " localhost 'DNS:localhost,IP:127.0.0.1,IP:::1'"
    ],
    _if=lambda: host.get_fact(CertificateState, path=cert_file, seconds=30 * 86400) != "valid",
)

# -- configuration, checked by the server before it is used ------------------------------------
memory_mb = settings.postgres_memory_mb or host.get_fact(Memory) or 1024  # pyinfra's Memory: total MB
cpus = host.get_fact(Cpus) or 1
config = postgres_config(
    name="Ensure PostgreSQL's configuration and pg_hba.conf are in place (checked by the server)",
    files={
        f"{cluster_dir}/conf.d/60-holistix.conf": render(
            "postgres/holistix.conf.j2",
            cert_file=cert_file,
            key_file=key_file,
            ciphers=tls.MOZILLA_INTERMEDIATE_CIPHERS,
            memory_mb=memory_mb,
            cpus=cpus,
            tuning=policy.tuning(memory_mb, cpus, settings.postgres_max_connections, settings.postgres_overrides),
        ),
        f"{cluster_dir}/pg_hba.conf": render(
            "postgres/pg_hba.conf.j2", database=database, role=role, monitoring_role=monitoring.POSTGRES_ROLE
        ),
    },
    restart_unit=cluster_unit,
    check_command=f"runuser -u postgres -- /usr/lib/postgresql/{version}/bin/postgres -D /var/lib/postgresql/{version}/main"
    f" -c config_file={cluster_dir}/postgresql.conf -C data_directory",
)
server.shell(
    name="Ensure PostgreSQL serves the renewed certificate",
    commands=["runuser -u postgres -- psql -X -A -t -q -c 'SELECT pg_reload_conf()'"],
    _if=lambda: certificate.did_change() and not config.did_change(),
)
systemd.service(
    name=f"Ensure PostgreSQL {version} runs and starts at boot",
    service=cluster_unit,
    running=True,
    enabled=True,
)

# -- the environment's database and role -----------------------------------------------------------
postgres.database(
    name=f"Ensure database {database} exists (UTF-8, owned by postgres)",
    database=database,
    owner="postgres",
    encoding="UTF8",
    lc_collate="C.UTF-8",
    lc_ctype="C.UTF-8",
    template="template0",
    _sudo_user="postgres",
)
postgres_login_role(
    name=f"Ensure role {role} can log in and do nothing else",
    role=role,
    connection_limit=settings.postgres_app_connection_limit,
)
password_file = f"{settings.secrets_dir}/database_password"
generated_secret(
    name=f"Ensure the generated secret {password_file.rsplit('/', 1)[1]} exists",
    path=password_file,
    command="openssl rand -base64 48 | tr -dc 'A-Za-z0-9' | head -c 40",
    directory=settings.secrets_dir,
)
postgres_role_password(
    name=f"Ensure role {role} has the generated password (compared on the host, never sent)",
    role=role,
    password_file=password_file,
)

# -- the platform's schema, then grants that cover what it created --------------------------------
if settings.postgres_database_dir:
    database_copy = f"/var/lib/holistix/{settings.environment}/database"
    files.directory(
        name=f"Ensure /var/lib/holistix/{settings.environment} exists",
        path=f"/var/lib/holistix/{settings.environment}",
        mode="0755",
    )
    files.sync(
        name=f"Ensure {database_copy} holds the database/ directory to apply",
        src=settings.postgres_database_dir,
        dest=database_copy,
        user="root",
        group="postgres",
        mode="0640",
        dir_mode="0750",
        delete=True,
    )
    database_migrations(
        name=f"Ensure {database} has every schema file, migration and procedure applied once",
        database=database,
        directory=database_copy,
    )
postgres_app_grants(
    name=f"Ensure role {role} has the platform's grants in {database}, and no more",
    database=database,
    role=role,
)

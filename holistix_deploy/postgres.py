"""PostgreSQL policy shared by the postgres module and its tests: tuning formula and the keys it owns."""

from __future__ import annotations

# Keys the module owns for security; postgres_overrides may not change them, nor any ssl* key
# (ssl_passphrase_command runs a command) or include* directive (it could pull in any file).
MANAGED_KEYS = frozenset(
    {
        "listen_addresses",
        "port",
        "password_encryption",
        "ssl",
        "ssl_cert_file",
        "ssl_key_file",
        "ssl_min_protocol_version",
        "ssl_ciphers",
        "ssl_prefer_server_ciphers",
        "hba_file",
        "ident_file",
        "log_connections",
        "log_disconnections",
        "data_directory",
        "unix_socket_directories",
        "config_file",
        "external_pid_file",
    }
)


def tuning(memory_mb: int, cpus: int, max_connections: int, overrides: dict[str, str]) -> dict[str, str]:
    """Memory and parallelism settings from the host's size (PGTune's "web application" shape).

    shared_buffers        = 25 % of RAM, at most 8 GB
    effective_cache_size  = 75 % of RAM
    maintenance_work_mem  = 5 % of RAM, between 64 MB and 2 GB
    work_mem              = (RAM - shared_buffers) / (3 x max_connections), between 4 MB and 64 MB
    max_worker_processes  = max_parallel_workers = CPUs; per gather: half of them (at least 1)

    Any key in ``overrides`` replaces the computed value.
    """
    shared_buffers = min(memory_mb // 4, 8192)
    settings = {
        "max_connections": str(max_connections),
        "shared_buffers": f"{shared_buffers}MB",
        "effective_cache_size": f"{memory_mb * 3 // 4}MB",
        "maintenance_work_mem": f"{min(max(memory_mb // 20, 64), 2048)}MB",
        "work_mem": f"{min(max((memory_mb - shared_buffers) // (3 * max_connections), 4), 64)}MB",
        "max_worker_processes": str(max(cpus, 2)),
        "max_parallel_workers": str(max(cpus, 1)),
        "max_parallel_workers_per_gather": str(max(cpus // 2, 1)),
    }
    settings.update({key: str(value) for key, value in overrides.items()})
    return settings

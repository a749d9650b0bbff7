"""The PostgreSQL sizing formula (documented in holistix_deploy/postgres.py and the README)."""

from holistix_deploy.postgres import tuning


def test_a_small_vps_gets_a_quarter_of_its_ram_as_shared_buffers():
    assert tuning(2048, 2, 100, {}) == {
        "max_connections": "100",
        "shared_buffers": "512MB",
        "effective_cache_size": "1536MB",
        "maintenance_work_mem": "102MB",
        "work_mem": "5MB",
        "max_worker_processes": "2",
        "max_parallel_workers": "2",
        "max_parallel_workers_per_gather": "1",
    }


def test_a_large_host_is_capped():
    sized = tuning(131072, 32, 200, {})
    assert sized["shared_buffers"] == "8192MB"
    assert sized["maintenance_work_mem"] == "2048MB"
    assert sized["work_mem"] == "64MB"
    assert sized["max_parallel_workers_per_gather"] == "16"


def test_tiny_hosts_keep_floors():
    sized = tuning(256, 1, 500, {})
    assert sized["work_mem"] == "4MB" and sized["maintenance_work_mem"] == "64MB"
    assert sized["max_worker_processes"] == "2"


def test_overrides_replace_computed_values():
    assert tuning(2048, 2, 100, {"work_mem": "16MB"})["work_mem"] == "16MB"

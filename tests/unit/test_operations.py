"""Our operations against recorded facts: one fixture per branch, the no-change branch included.

Fixtures live in tests/unit/operations/<module.operation>/*.json (pyinfra-testing's format:
kwargs, the facts the host pretends to have, the commands expected back).
"""

from pathlib import Path
from unittest.mock import patch

from pyinfra_testing.operations import make_operation_tests
from pyinfra_testing.util import FakeState

FIXTURES = Path(__file__).parent / "operations"

TestGeneratedSecret = make_operation_tests(
    "holistix_deploy", "operations.generated_secret", FIXTURES / "operations.generated_secret"
)
TestOperatorSecret = make_operation_tests(
    "holistix_deploy", "operations.operator_secret", FIXTURES / "operations.operator_secret"
)
TestValidatedFile = make_operation_tests(
    "holistix_deploy", "operations.validated_file", FIXTURES / "operations.validated_file"
)
TestSshdDropIn = make_operation_tests(
    "holistix_deploy", "operations.sshd_drop_in", FIXTURES / "operations.sshd_drop_in"
)
TestUfwFirewall = make_operation_tests(
    "holistix_deploy", "operations.ufw_firewall", FIXTURES / "operations.ufw_firewall"
)
TestUfwRulesBlock = make_operation_tests(
    "holistix_deploy", "operations.ufw_rules_block", FIXTURES / "operations.ufw_rules_block"
)
TestPostgresLoginRole = make_operation_tests(
    "holistix_deploy", "operations.postgres_login_role", FIXTURES / "operations.postgres_login_role"
)
TestPostgresRolePassword = make_operation_tests(
    "holistix_deploy", "operations.postgres_role_password", FIXTURES / "operations.postgres_role_password"
)
TestPostgresAppGrants = make_operation_tests(
    "holistix_deploy", "operations.postgres_app_grants", FIXTURES / "operations.postgres_app_grants"
)
TestDatabaseMigrations = make_operation_tests(
    "holistix_deploy", "operations.database_migrations", FIXTURES / "operations.database_migrations"
)
TestPostgresConfig = make_operation_tests(
    "holistix_deploy", "operations.postgres_config", FIXTURES / "operations.postgres_config"
)
TestCorednsRelease = make_operation_tests(
    "holistix_deploy", "operations.coredns_release", FIXTURES / "operations.coredns_release"
)
TestVictoriaLogsRelease = make_operation_tests(
    "holistix_deploy", "operations.victorialogs_release", FIXTURES / "operations.victorialogs_release"
)
TestJaegerRelease = make_operation_tests(
    "holistix_deploy", "operations.jaeger_release", FIXTURES / "operations.jaeger_release"
)
TestResolvConf = make_operation_tests("holistix_deploy", "operations.resolv_conf", FIXTURES / "operations.resolv_conf")


class WhileExecuting:
    """pyinfra also runs operation bodies while it plans a run, before earlier operations have
    changed anything: these fixtures describe the execution itself."""

    def setUp(self):
        self._executing = patch.object(FakeState, "is_executing", True)
        self._executing.start()

    def tearDown(self):
        self._executing.stop()


class TestUfwRulesBlockWhenExecuting(
    WhileExecuting,
    make_operation_tests(
        "holistix_deploy", "operations.ufw_rules_block", FIXTURES / "operations.ufw_rules_block.executing"
    ),
):
    """A missing after.rules is an error only once the run executes (ufw is installed earlier in it)."""


class TestDnsServerAnswers(
    WhileExecuting,
    make_operation_tests(
        "holistix_deploy", "operations.dns_server_answers", FIXTURES / "operations.dns_server_answers"
    ),
):
    """The check asks the server only while the run executes, after the operations that start it."""


TestDnsServerAnswersWhilePlanning = make_operation_tests(
    "holistix_deploy", "operations.dns_server_answers", FIXTURES / "operations.dns_server_answers.planning"
)
TestNginxConfig = make_operation_tests(
    "holistix_deploy", "operations.nginx_config", FIXTURES / "operations.nginx_config"
)
TestAcmeCertificate = make_operation_tests(
    "holistix_deploy", "operations.acme_certificate", FIXTURES / "operations.acme_certificate"
)
TestPlatformRelease = make_operation_tests(
    "holistix_deploy", "operations.platform_release", FIXTURES / "operations.platform_release"
)
TestCurrentRelease = make_operation_tests(
    "holistix_deploy", "operations.current_release", FIXTURES / "operations.current_release"
)
TestReleasesPruned = make_operation_tests(
    "holistix_deploy", "operations.releases_pruned", FIXTURES / "operations.releases_pruned"
)
TestReleaseConfigurationApplied = make_operation_tests(
    "holistix_deploy", "operations.release_configuration_applied", FIXTURES / "operations.release_configuration_applied"
)
TestOrganisationBlocksChecked = make_operation_tests(
    "holistix_deploy", "operations.organisation_blocks_checked", FIXTURES / "operations.organisation_blocks_checked"
)

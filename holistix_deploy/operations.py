"""Operations pyinfra lacks, in pyinfra's shape: read a fact, compare, yield or noop.

* ``generated_secret``: a file made once on the host by a command (never regenerated).
* ``operator_secret``: a file holding a value the operator gave, sent over stdin.
* ``validated_file``: a config file swapped in only after its own checker accepts it.
* ``sshd_drop_in``: an sshd drop-in, checked, swapped, and proven by a fresh login.
* ``ufw_firewall``: ufw's defaults and exact rule set, enabled, proven by a fresh login.
"""

from __future__ import annotations

import hashlib
import hmac
import shlex
from io import BytesIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, OperationError, QuoteString, StringCommand, operation
from pyinfra.facts.files import File, FileContents, Link, Sha1File

from holistix_deploy.facts import (
    SECRET_DIGEST_ROUNDS,
    HelperCheck,
    PlatformReleases,
    PostgresRows,
    SecretDigest,
    Ufw,
    authoritative_soa_wait,
)
from holistix_deploy.lockout import prove_fresh_login


def _mode_text(mode: str) -> str:
    return mode.lstrip("0") or "0"


def _attributes_differ(info: dict | None, mode: str, user: str, group: str) -> bool:
    return info is not None and (
        str(info["mode"]) != _mode_text(mode) or info["user"] != user or info["group"] != group
    )


def _fix_attributes(path: str, mode: str, user: str, group: str):
    yield StringCommand("chown", f"{user}:{group}", QuoteString(path))
    yield StringCommand("chmod", mode, QuoteString(path))


def _keep_previous(paths) -> str:
    """Shell: keep each file as <file>.previous, or remember that it did not exist."""
    return " && ".join(
        f"{{ if [ -e {q} ]; then cp -p {q} {q}.previous; else rm -f {q}.previous; fi; }}"
        for q in map(shlex.quote, paths)
    )


def _put_previous_back(paths) -> str:
    """Shell: undo _keep_previous (a file that did not exist before is removed again)."""
    return " && ".join(
        f"{{ if [ -e {q}.previous ]; then mv {q}.previous {q}; else rm -f {q}; fi; }}" for q in map(shlex.quote, paths)
    )


def _drop_previous(paths) -> StringCommand:
    return StringCommand("rm -f " + " ".join(shlex.quote(f"{path}.previous") for path in paths))


@operation()
def generated_secret(
    path: str, command: str, directory: str, mode: str = "0600", user: str = "root", group: str = "root"
):
    """
    Create a secret file on the host from a command's output, once.

    + path: file to create
    + command: prints the secret on stdout; runs in ``directory`` with umask 077
    + directory: working directory of the command (the secrets directory)
    + mode, user, group: attributes of the file
    + newline: end the file with a newline, like the generated secrets (False for readers that
      take every byte, such as Alertmanager's smtp_auth_password_file before 0.27)

    The value never leaves the host: it goes from the command straight into a temporary
    file beside ``path`` that is renamed into place only when the command succeeded. An
    existing non-empty file is never regenerated (only its attributes are corrected).

    **Example:**

    .. code:: python

        generated_secret(
            name="Ensure the session cookie key exists",
            path="/etc/holistix/prod/session_cookie_key",
            command="openssl rand -hex 32",
            directory="/etc/holistix/prod",
        )
    """
    info = host.get_fact(File, path=path)
    if info is None or info["size"] == 0:
        temporary = f"{path}.new"
        yield StringCommand(
            "umask 077 && cd",
            QuoteString(directory),
            "&&",
            command,
            ">",
            QuoteString(temporary),
            "&& test -s",
            QuoteString(temporary),
            "&& mv",
            QuoteString(temporary),
            QuoteString(path),
            "|| { rm -f",
            QuoteString(temporary),
            "; exit 1; }",
        )
        yield from _fix_attributes(path, mode, user, group)
    elif _attributes_differ(info, mode, user, group):
        yield from _fix_attributes(path, mode, user, group)
    else:
        host.noop(f"secret {path} exists")


def install_helpers(helpers: dict[str, str]) -> dict:
    """Install the project's host helper scripts: {path on the host: path under files/}, root
    0755. Returns {path on the host: its operation}."""
    from pyinfra.operations import files

    from holistix_deploy.templating import ROOT

    return {
        helper: files.put(
            name=f"Ensure the helper {helper} is installed", src=str(ROOT / "files" / source), dest=helper, mode="0755"
        )
        for helper, source in helpers.items()
    }


def _digest_matches(digest: str, value: str) -> bool:
    salt, _, expected = digest.partition("$")
    actual = hashlib.pbkdf2_hmac("sha256", value.encode(), bytes.fromhex(salt), SECRET_DIGEST_ROUNDS).hex()
    return hmac.compare_digest(actual, expected)


@operation()
def operator_secret(
    path: str, value: str, mode: str = "0600", user: str = "root", group: str = "root", newline: bool = True
):
    """
    Store a secret the operator gave (from an environment variable) in a file on the host.

    + path: file to write
    + value: the secret; compared by sha256 and sent over the SSH channel's stdin only
    + mode, user, group: attributes of the file

    **Example:**

    .. code:: python

        operator_secret(
            name="Ensure the SMTP password from HOLISTIX_SMTP_PASSWORD is stored",
            path="/etc/holistix/prod/smtp_password",
            value=os.environ["HOLISTIX_SMTP_PASSWORD"],
        )
    """
    # stored with one trailing newline, like the generated secrets (pyinfra's stdin adds it)
    stored = value if value.endswith("\n") or not newline else value + "\n"
    # compared through a salted, slow digest made on the host: what -vvv prints of the fact is
    # as hard to reverse as a password hash (a plain sha256 of a weak secret is not)
    digest = host.get_fact(SecretDigest, path=path)
    if digest is None or not _digest_matches(digest, stored):
        temporary = f"{path}.new"
        yield StringCommand(
            # pyinfra ends what it sends on stdin with a newline: head drops it when unwanted
            "umask 077 && cat >" if newline else "umask 077 && head -c -1 >",
            QuoteString(temporary),
            "&& mv",
            QuoteString(temporary),
            QuoteString(path),
            _stdin=stored if newline else stored + "\n",
        )
        yield from _fix_attributes(path, mode, user, group)
    elif _attributes_differ(host.get_fact(File, path=path), mode, user, group):
        yield from _fix_attributes(path, mode, user, group)
    else:
        host.noop(f"secret {path} is up to date")


@operation()
def validated_file(
    dest: str, content: str, validate: str, candidate: str, mode: str = "0644", user: str = "root", group: str = "root"
):
    """
    Put a config file in place only after its daemon's checker accepts it.

    + dest: the live file
    + content: the wanted file content
    + validate: checker command with ``{path}`` where the candidate file goes, e.g. ``visudo -cf {path}``
    + candidate: where the candidate is written first; must be a path the daemon ignores
      (sudo skips names with a dot, so ``/etc/sudoers.d/.90-x.candidate`` is safe)
    + mode, user, group: attributes of the live file

    A rejected candidate is removed and the operation fails: the live file keeps serving.

    **Example:**

    .. code:: python

        validated_file(
            name="Ensure the deploy user's sudoers rule is in place",
            dest="/etc/sudoers.d/90-holistix-deploy",
            content="deploy ALL=(ALL) NOPASSWD:ALL\\n",
            validate="visudo -cf {path}",
            candidate="/etc/sudoers.d/.90-holistix-deploy.candidate",
            mode="0440",
        )
    """
    data = content.encode()
    if host.get_fact(Sha1File, path=dest) != hashlib.sha1(data).hexdigest():
        yield FileUploadCommand(BytesIO(data), candidate, remote_temp_filename=host.get_temp_filename(candidate))
        yield from _fix_attributes(candidate, mode, user, group)
        yield StringCommand(
            "{",
            validate.format(path=shlex.quote(candidate)),
            "; } || { rm -f",
            QuoteString(candidate),
            "; echo 'rejected by the checker, the live file is unchanged:'",
            QuoteString(dest),
            ">&2; exit 1; }",
        )
        yield StringCommand("mv", QuoteString(candidate), QuoteString(dest))
    elif _attributes_differ(host.get_fact(File, path=dest), mode, user, group):
        yield from _fix_attributes(dest, mode, user, group)
    else:
        host.noop(f"{dest} is up to date")


# After a reload sshd re-executes itself and refuses connections for a moment. Wait on the host
# (over loopback, which neither ufw's rate limit nor fail2ban counts) until it greets again, so
# the fresh-login proof needs one attempt from outside, not a burst of retries.
SSHD_RELOAD = (
    "systemctl try-reload-or-restart ssh.service && sleep 0.5"
    " && for attempt in $(seq 40); do timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/22 && head -c 4 <&3'"
    " 2>/dev/null | grep -q SSH- && break; sleep 0.25; done"
)


@operation()
def sshd_drop_in(dest: str, content: str, reload_command: str = SSHD_RELOAD):
    """
    Put an sshd_config drop-in in place without ever locking the operator out.

    + dest: the drop-in, e.g. ``/etc/ssh/sshd_config.d/00-holistix-hardening.conf``
    + content: wanted content
    + reload_command: makes the running sshd read it (a no-op for an idle socket-activated sshd,
      whose next connection reads the new file anyway)

    Order: the candidate is checked with ``sshd -t`` together with the live configuration, the
    previous file is kept as ``<dest>.previous`` until the proof passed, the candidate is swapped in, sshd reloads,
    and a *new* SSH login with this run's credentials must succeed (and ``sudo -n``). If the
    check or the login fails, the previous file is put back and sshd reloaded: the run fails,
    the operator keeps access.

    **Example:**

    .. code:: python

        sshd_drop_in(
            name="Ensure the SSH hardening drop-in is in place",
            dest="/etc/ssh/sshd_config.d/00-holistix-hardening.conf",
            content=render("base/sshd-hardening.conf.j2", ...),
        )
    """
    data = content.encode()
    if host.get_fact(Sha1File, path=dest) == hashlib.sha1(data).hexdigest():
        if _attributes_differ(host.get_fact(File, path=dest), "0600", "root", "root"):
            yield from _fix_attributes(dest, "0600", "root", "root")
        else:
            host.noop(f"{dest} is up to date")
        return
    candidate, check_main = f"{dest}.candidate", f"{dest}.check"
    q_dest, q_candidate, q_check = map(shlex.quote, (dest, candidate, check_main))
    restore = f"{_put_previous_back([dest])} && sshd -t && {reload_command}"
    yield FileUploadCommand(BytesIO(data), candidate, remote_temp_filename=host.get_temp_filename(candidate))
    yield from _fix_attributes(candidate, "0600", "root", "root")
    # sshd keeps the first value it reads: a main file that includes the candidate first and then
    # the live configuration is exactly what sshd will see after the swap
    yield StringCommand(
        f"printf 'Include %s\\nInclude /etc/ssh/sshd_config\\n' {q_candidate} > {q_check}"
        f" && {{ sshd -t -f {q_check}; checked=$?; rm -f {q_check}; test $checked = 0; }}"
        f" || {{ rm -f {q_candidate}; echo 'sshd -t rejected the new SSH configuration; nothing changed' >&2; exit 1; }}"
    )
    yield StringCommand(_keep_previous([dest]))
    yield StringCommand(
        f"{{ mv {q_candidate} {q_dest} && {reload_command}; }}"
        f" || {{ {restore}; echo 'sshd did not take the new configuration; the previous one is back' >&2; exit 1; }}"
    )
    yield prove_fresh_login("the new SSH configuration", [restore])
    yield _drop_previous([dest])


def _ufw_delete(rule: str) -> str:
    # "ufw allow 80/tcp comment 'x'" -> "ufw delete allow 80/tcp" (ufw matches without the comment);
    # "ufw route allow ..." -> "ufw route delete allow ..." (ufw refuses "delete route")
    body = rule.removeprefix("ufw ").split(" comment '")[0]
    if body.startswith("route "):
        return "ufw route delete " + body.removeprefix("route ")
    return "ufw delete " + body


UFW_STATE_FILES = ("/etc/ufw/user.rules", "/etc/ufw/user6.rules", "/etc/default/ufw")


@operation()
def ufw_firewall(rules: list[str], defaults: dict[str, str]):
    """
    Make ufw enforce exactly ``rules`` with ``defaults``, without locking the operator out.

    + rules: ufw commands in the form ``ufw show added`` prints them (so they compare equal),
      e.g. ``ufw limit 22/tcp comment 'ssh'``; rules not listed are deleted
    + defaults: policy per direction, e.g. ``{"incoming": "deny", "outgoing": "allow", "routed": "deny"}``

    Rules are added before ufw is enabled; after any change a new SSH login must succeed, or
    ufw is disabled again and the operation fails.

    **Example:**

    .. code:: python

        ufw_firewall(
            name="Ensure ufw allows only the platform's ports",
            rules=["ufw limit 22/tcp comment 'ssh'", "ufw allow 443/tcp comment 'https'"],
            defaults={"incoming": "deny", "outgoing": "allow", "routed": "deny"},
        )
    """
    current = host.get_fact(Ufw) or {"active": False, "defaults": {}, "rules": []}
    commands = [
        f"ufw default {policy} {direction}"
        for direction, policy in defaults.items()
        if current["defaults"].get(direction) != policy
    ]
    # deletions first: ufw matches a delete without the comment, so a rule whose comment changed
    # must go before its new version is added (added first, it would be skipped as existing and
    # the delete would then remove the only copy)
    commands += [_ufw_delete(rule) for rule in current["rules"] if rule not in rules]
    commands += [rule for rule in rules if rule not in current["rules"]]
    if not current["active"]:
        commands.append("ufw --force enable")
    if not commands:
        host.noop("ufw is active with exactly the wanted rules")
        return
    # what to go back to if the change locks SSH out: the previous rule files, and ufw as it was
    yield StringCommand(_keep_previous(UFW_STATE_FILES))
    put_back = _put_previous_back(UFW_STATE_FILES)
    restore = f"{put_back} && ufw reload" if current["active"] else f"ufw --force disable && {put_back}"
    for command in commands:
        yield StringCommand(f"{command} || {{ {restore}; exit 1; }}")
    yield prove_fresh_login("the firewall change", [restore])
    yield _drop_previous(UFW_STATE_FILES)


@operation()
def ufw_rules_block(path: str, block: str, marker: str):
    """
    Keep a block of raw iptables-restore rules in one of ufw's rules files (after.rules).

    + path: the rules file, e.g. ``/etc/ufw/after.rules``
    + block: the rules, a complete ``*filter ... COMMIT`` section
    + marker: text of the begin/end comment lines that delimit the block

    The new file is checked with ``iptables-restore --test`` before it replaces the live one;
    ufw reloads only when it is active.

    **Example:**

    .. code:: python

        ufw_rules_block(
            name="Ensure Docker-published ports obey the firewall",
            path="/etc/ufw/after.rules",
            block=render("firewall/docker-user.rules.j2", ...),
            marker="HOLISTIX DOCKER-USER",
        )
    """
    begin, end = f"# BEGIN {marker}", f"# END {marker}"
    wanted = [begin, *block.rstrip("\n").splitlines(), end]
    lines = host.get_fact(FileContents, path=path)
    if lines is None and not host.state.is_executing:
        # planning a run (without -y) before the operation that installs ufw has run
        host.noop(f"{path} is read when the run executes")
        return
    if lines is None:
        raise OperationError(f"{path} does not exist (is ufw installed?)")
    if begin in lines and end in lines and lines[lines.index(begin) : lines.index(end) + 1] == wanted:
        host.noop(f"{path} holds the {marker} block")
        return
    outside = lines[: lines.index(begin)] + lines[lines.index(end) + 1 :] if begin in lines and end in lines else lines
    content = "\n".join([*outside, *wanted]) + "\n"
    candidate = f"{path}.candidate"
    yield from validated_file._inner(
        dest=path,
        content=content,
        candidate=candidate,
        validate="iptables-restore --test --noflush {path}",
        mode="0640",
    )
    yield StringCommand("if ufw status | grep -q '^Status: active'; then ufw reload; fi")


def _psql(database: str, sql: str) -> StringCommand:
    """psql as the postgres OS user with the SQL on standard input (nothing in argv)."""
    return StringCommand(
        "runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d",
        QuoteString(database),
        _stdin=sql,
    )


@operation()
def postgres_config(files: dict[str, str], restart_unit: str, check_command: str, owner: str = "postgres"):
    """
    Put PostgreSQL configuration files in place, checked by the server before it uses them.

    + files: {path: content}, e.g. a conf.d drop-in and pg_hba.conf
    + restart_unit: the cluster's unit (``postgresql@16-main``), restarted only when a changed
      setting needs it (``pg_settings.pending_restart``); otherwise a reload is enough
    + check_command: parses the whole configuration the way the server will and exits non-zero
      on any error (``postgres -C data_directory`` with the cluster's paths)

    The server reads configuration files only on reload, so the new files are written, then
    checked by ``check_command`` and ``pg_hba_file_rules`` (the server's own parsers); on any
    error the previous files are put back and nothing is reloaded.

    **Example:**

    .. code:: python

        postgres_config(
            name="Ensure PostgreSQL's configuration is in place",
            files={"/etc/postgresql/16/main/pg_hba.conf": render("postgres/pg_hba.conf.j2", ...)},
            restart_unit="postgresql@16-main",
        )
    """
    changed = {
        path: content
        for path, content in files.items()
        if host.get_fact(Sha1File, path=path) != hashlib.sha1(content.encode()).hexdigest()
    }
    if not changed:
        host.noop("PostgreSQL configuration is up to date")
        return
    restore = _put_previous_back(changed)
    yield StringCommand(_keep_previous(changed))
    for path, content in changed.items():
        yield FileUploadCommand(BytesIO(content.encode()), path, remote_temp_filename=host.get_temp_filename(path))
        yield from _fix_attributes(path, "0640", owner, owner)
    # pg_hba_file_rules has line_number in every supported version (file_name only from 16 on)
    hba_errors = "SELECT 'pg_hba.conf:' || line_number || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL"
    reason = "PostgreSQL rejected the new configuration, the previous one stays"
    yield StringCommand(
        f'if ! errors=$({{ {check_command}; }} 2>&1 >/dev/null); then errors="${{errors:-configuration check failed}}";'
        " else errors=''; fi;"
        f" errors=\"$errors$(runuser -u postgres -- psql -X -A -t -q -c {shlex.quote(hba_errors)} || echo 'psql failed')\";"
        f' if [ -n "$errors" ]; then {restore}; echo "{reason}: $errors" >&2; exit 1; fi'
    )
    pending = "SELECT count(*) FROM pg_settings WHERE pending_restart"
    unit = shlex.quote(restart_unit)
    # a setting can parse and still keep the server from starting: then the previous files come
    # back and the server is started with them
    yield StringCommand(
        "{ runuser -u postgres -- psql -X -A -t -q -c 'SELECT pg_reload_conf()' >/dev/null && sleep 1"
        f' && if [ "$(runuser -u postgres -- psql -X -A -t -q -c {shlex.quote(pending)})" != 0 ];'
        f" then systemctl restart {unit}; fi && pg_isready -q -t 30; }}"
        f" || {{ {restore}; systemctl restart {unit}; echo 'PostgreSQL did not come up with the new configuration;"
        " the previous one is back' >&2; exit 1; }"
    )
    yield _drop_previous(changed)


ROLE_ATTRIBUTES = "rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolconnlimit"


@operation()
def postgres_login_role(role: str, connection_limit: int):
    """
    A role that can log in and do nothing else: not superuser, createdb, createrole,
    replication or bypassrls; with a connection limit. Attributes that drifted are reset
    (pyinfra's postgres.role only ever adds attributes).

    **Example:**

    .. code:: python

        postgres_login_role(name="Ensure the app role exists", role="ganymede_app_prod", connection_limit=40)
    """
    rows = host.get_fact(
        PostgresRows, database="postgres", query=f"SELECT {ROLE_ATTRIBUTES} FROM pg_roles WHERE rolname = '{role}'"
    )
    wanted = f"t|f|f|f|f|f|{connection_limit}"
    attributes = (
        f"LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT "
        f"CONNECTION LIMIT {int(connection_limit)}"
    )
    if not rows:
        yield _psql("postgres", f'CREATE ROLE "{role}" {attributes};\n')
    elif rows[0] != wanted:
        yield _psql("postgres", f'ALTER ROLE "{role}" {attributes};\n')
    else:
        host.noop(f"role {role} can log in and nothing more")


@operation()
def postgres_monitoring_role(role: str, connection_limit: int = 3):
    """
    A role that logs in (peer, over the socket) and reads PostgreSQL's statistics through
    pg_monitor, and nothing more: no superuser, no data of any database.

    **Example:**

    .. code:: python

        postgres_monitoring_role(name="Ensure the exporter's role exists", role="prometheus")
    """
    rows = host.get_fact(
        PostgresRows,
        database="postgres",
        query=f"SELECT {ROLE_ATTRIBUTES}, rolinherit, pg_has_role(oid, 'pg_monitor', 'MEMBER') FROM pg_roles "
        f"WHERE rolname = '{role}'",
    )
    attributes = (
        f"LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT "
        f"CONNECTION LIMIT {int(connection_limit)}"
    )
    if rows and rows[0] == f"t|f|f|f|f|f|{connection_limit}|t|t":
        host.noop(f"role {role} reads the statistics and nothing more")
        return
    statement = "CREATE" if not rows else "ALTER"
    yield _psql("postgres", f'{statement} ROLE "{role}" {attributes};\nGRANT pg_monitor TO "{role}";\n')


ROLE_PASSWORD_HELPER = "/usr/local/lib/holistix/pg-role-password"


@operation()
def postgres_role_password(role: str, password_file: str):
    """
    Keep a role's SCRAM password equal to a password file on the host, without the password
    ever leaving the host or appearing in a command line (see files/postgres/role_password.py).

    **Example:**

    .. code:: python

        postgres_role_password(
            name="Ensure the app role's password is the generated one",
            role="ganymede_app_prod",
            password_file="/etc/holistix/prod/database_password",
        )
    """
    state = host.get_fact(HelperCheck, helper=ROLE_PASSWORD_HELPER, arguments=f"{role} {shlex.quote(password_file)}")
    if state and state[0] == "match":
        host.noop(f"role {role} has the password of {password_file}")
        return
    yield StringCommand(ROLE_PASSWORD_HELPER, "apply", role, QuoteString(password_file))


def app_grant_problems_query(role: str) -> str:
    """What the application role lacks or has too much of, one row per problem."""
    return (
        f"SELECT 'connect' WHERE NOT has_database_privilege('{role}', current_database(), 'CONNECT') "
        "UNION ALL SELECT 'public-connect' FROM pg_database WHERE datname = current_database() "
        "AND (datacl IS NULL OR array_to_string(datacl, ',') ~ '(^|,)=[A-Za-z]*c') "
        f"UNION ALL SELECT 'schema-usage' WHERE NOT has_schema_privilege('{role}', 'public', 'USAGE') "
        f"UNION ALL SELECT 'schema-create' WHERE has_schema_privilege('{role}', 'public', 'CREATE') "
        "UNION ALL SELECT 'table:' || c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
        f"AND c.relkind IN ('r', 'p', 'v') AND NOT (has_table_privilege('{role}', c.oid, 'SELECT') "
        f"AND has_table_privilege('{role}', c.oid, 'INSERT') AND has_table_privilege('{role}', c.oid, 'UPDATE') "
        f"AND has_table_privilege('{role}', c.oid, 'DELETE')) "
        "UNION ALL SELECT 'sequence:' || c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
        f"AND c.relkind = 'S' AND NOT (has_sequence_privilege('{role}', c.oid, 'USAGE') "
        f"AND has_sequence_privilege('{role}', c.oid, 'SELECT')) "
        "UNION ALL SELECT 'routine:' || p.proname FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace "
        f"AND NOT has_function_privilege('{role}', p.oid, 'EXECUTE') "
        "UNION ALL SELECT 'default:' || v.t FROM (VALUES ('r'), ('S'), ('f')) AS v(t) WHERE NOT EXISTS ("
        "SELECT 1 FROM pg_default_acl d WHERE d.defaclrole = 'postgres'::regrole "
        "AND d.defaclnamespace = 'public'::regnamespace AND d.defaclobjtype = v.t::\"char\" "
        f"AND array_to_string(d.defaclacl, ',') ~ '(^|,){role}=') "
        "UNION ALL SELECT 'search_path' WHERE NOT EXISTS (SELECT 1 FROM pg_db_role_setting s "
        f"WHERE s.setrole = '{role}'::regrole AND s.setdatabase = 0 AND 'search_path=public' = ANY(s.setconfig))"
    )


@operation()
def postgres_app_grants(database: str, role: str):
    """
    What the platform's application role needs in its database, and nothing more: CONNECT (and
    nobody else's), USAGE on schema public (no CREATE), CRUD on tables, USAGE/SELECT on
    sequences, EXECUTE on functions and procedures, the same as default privileges for what
    postgres creates later, and ``search_path`` public. Checked with has_*_privilege, granted
    only when something is missing, so it runs again after every migration.

    **Example:**

    .. code:: python

        postgres_app_grants(name="Ensure the app role's grants", database="ganymede_prod", role="ganymede_app_prod")
    """
    problems = host.get_fact(PostgresRows, database=database, query=app_grant_problems_query(role))
    if problems == []:
        host.noop(f"{role} has exactly the platform's privileges in {database}")
        return
    yield _psql(
        database,
        "\n".join(
            [
                f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC;',
                f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO "{role}";',
                "REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
                f'GRANT USAGE ON SCHEMA public TO "{role}";',
                f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}";',
                f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}";',
                f'GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO "{role}";',
                f'GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA public TO "{role}";',
                f'ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{role}";',
                f'ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO "{role}";',
                f'ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO "{role}";',
                f'ALTER ROLE "{role}" SET search_path TO public;',
            ]
        )
        + "\n",
    )


MIGRATE_HELPER = "/usr/local/lib/holistix/db-migrate"


@operation()
def database_migrations(database: str, directory: str):
    """
    Apply a platform build's database/ directory (already on the host) to ``database`` with
    the postgres module's migration helper (files/postgres/db_migrate.py): schema/ only into a
    new database, each migration once, changed procedures again; an applied migration whose
    content changed stops the run with the file named.

    **Example:**

    .. code:: python

        database_migrations(
            name="Ensure the release's migrations are applied",
            database="ganymede_prod",
            directory="/var/lib/holistix/prod/database",
        )
    """
    state = host.get_fact(HelperCheck, helper=MIGRATE_HELPER, arguments=f"{database} {shlex.quote(directory)}")
    if state is not None:
        errors = [line.removeprefix("error ") for line in state if line.startswith("error ")]
        if errors:
            raise OperationError(f"migrations of {database} refused: " + "; ".join(errors))
        if state[-1:] != ["exit 0"]:
            raise OperationError(f"the migration helper failed on {database}: " + " | ".join(state[-5:]))
        if not any(line.startswith("pending ") for line in state):
            host.noop(f"{database} has every file of {directory}")
            return
    yield StringCommand(MIGRATE_HELPER, "apply", QuoteString(database), QuoteString(directory))


@operation(is_idempotent=False, idempotent_notice="Gate it with _if on the operations it proves.")
def prove_ssh_access(change: str):
    """
    Prove, with a new SSH connection and ``sudo -n``, that ``change`` left the operator a way in;
    fail the run loudly if not (for changes with nothing to put back, like a rewritten
    authorized_keys).

    **Example:**

    .. code:: python

        prove_ssh_access(
            name="Ensure the deploy user can still log in and sudo",
            change="the deploy user's keys or sudo rule",
            _if=any_changed(user, sudoers),
        )
    """
    yield prove_fresh_login(change, [])


def _install_release(
    what: str,
    label: str,
    url: str,
    sha256: str,
    binaries: dict[str, str],
    version_check: str,
    check_command: str | None,
):
    """Shell steps: fetch a release tarball, check its sha256, unpack ``binaries`` ({member:
    installed path}), run ``version_check`` ({work} = the unpacked members' directory) and
    ``check_command``, then swap each binary in (the old one kept as <path>.previous). Any failure
    before the swap leaves every installed binary as it was."""
    work, q_url = f"/var/tmp/holistix-{what}-release", shlex.quote(url)
    give_up = f"rm -rf {work}; exit 1"
    yield StringCommand(f"rm -rf {work} && mkdir -m 0700 {work} && curl -fsSL --retry 2 -o {work}/release.tgz {q_url}")
    mismatch = shlex.quote(f"checksum mismatch for {url}: expected {sha256}, got ")
    yield StringCommand(
        f'actual=$(sha256sum < {work}/release.tgz | cut -c1-64); if [ "$actual" != {sha256} ]; then'
        f' echo {mismatch}"$actual; nothing was installed" >&2; {give_up}; fi'
    )
    yield StringCommand(
        f"tar -xzf {work}/release.tgz -C {work} {' '.join(binaries)} && {version_check.format(work=work)}"
        f" || {{ echo {shlex.quote(f'the tarball from {url} does not hold {label}; nothing was installed')}"
        f" >&2; {give_up}; }}"
    )
    if check_command:
        yield StringCommand(
            f"{check_command.format(work=work)} || {{ echo"
            f" {shlex.quote(f'{label} does not start with the live configuration; nothing was installed')}"
            f" >&2; {give_up}; }}"
        )
    swaps = [
        f"if [ -e {q} ]; then cp -p {q} {q}.previous; fi"
        f" && install -m 0755 -o root -g root {work}/{member} {q}.new && mv -f {q}.new {q}"
        for member, q in ((member, shlex.quote(path)) for member, path in binaries.items())
    ]
    yield StringCommand(" && ".join([*swaps, f"rm -rf {work}"]))


@operation()
def coredns_release(
    version: str, url: str, sha256: str, binary: str = "/usr/local/bin/coredns", check_command: str | None = None
):
    """
    Install a CoreDNS release tarball's binary, verified by its sha256, when the installed
    binary reports another version (or there is none).

    + version: release, e.g. ``1.14.7``; the binary must report ``CoreDNS-<version>``
    + url: the release tarball (one member, ``coredns``)
    + sha256: the tarball's published checksum
    + binary: where it is installed (root 0755); the one it replaces is kept as ``<binary>.previous``
    + check_command: run with ``{binary}`` = the new binary when a configuration is live; it
      must accept that configuration (a new release that cannot load it is not installed)

    A checksum mismatch, a damaged tarball, a binary reporting another version or one that
    rejects the live configuration fails the run before the installed binary is touched.

    **Example:**

    .. code:: python

        coredns_release(
            name="Ensure CoreDNS 1.14.7 is installed",
            version="1.14.7",
            url="https://github.com/coredns/coredns/releases/download/v1.14.7/coredns_1.14.7_linux_amd64.tgz",
            sha256="<from coredns_1.14.7_linux_amd64.tgz.sha256>",
        )
    """
    from holistix_deploy.facts import CorednsVersion

    if host.get_fact(CorednsVersion, binary=binary) == version:
        host.noop(f"CoreDNS {version} is installed")
        return
    yield from _install_release(
        "coredns",
        f"CoreDNS {version}",
        url,
        sha256,
        {"coredns": binary},
        f"{{work}}/coredns -version | grep -qx 'CoreDNS-{version}'",
        check_command.format(binary="{work}/coredns") if check_command else None,
    )


@operation()
def victorialogs_release(version: str, url: str, sha256: str, binaries: dict[str, str]):
    """
    Install binaries from a VictoriaLogs release tarball (victoria-logs-... or vlutils-...),
    verified by its sha256, when any of them reports another version (or is missing).

    + version: release, e.g. ``1.52.1``; each binary's ``-version`` must hold ``-tags-v<version>-``
    + url: the release tarball
    + sha256: the tarball's line in its ``_checksums.txt``
    + binaries: {member: installed path}, e.g. ``{"victoria-logs-prod": "/usr/local/bin/victoria-logs"}``
    """
    from holistix_deploy.facts import VictoriaLogsVersion

    installed = {host.get_fact(VictoriaLogsVersion, binary=path) for path in binaries.values()}
    if installed == {version}:
        host.noop(f"VictoriaLogs {version}: {', '.join(binaries.values())} installed")
        return
    tag = shlex.quote(f"-tags-v{version}-")
    yield from _install_release(
        "victorialogs-" + "-".join(sorted(binaries)).replace("-prod", ""),
        f"VictoriaLogs {version}",
        url,
        sha256,
        binaries,
        " && ".join(f"{{work}}/{member} -version | grep -q -- {tag}" for member in binaries),
        None,
    )


@operation()
def jaeger_release(version: str, url: str, sha256: str, binaries: dict[str, str], check_command: str | None = None):
    """
    Install Jaeger's binary from its release tarball, verified by its sha256, when the installed
    one reports another version (or there is none).

    + version: release, e.g. ``2.13.0``; ``jaeger version`` must say ``"gitVersion":"v<version>"``
    + url: the release tarball
    + sha256: the tarball's line in ``jaeger-<version>.sha256sum.txt``
    + binaries: {member: installed path}, e.g. ``{"jaeger-2.13.0-linux-amd64/jaeger": "/usr/local/bin/jaeger"}``
    + check_command: run with ``{binary}`` = the new binary; it must accept the live configuration
      (a release that rejects it is not installed)
    """
    from holistix_deploy.facts import JaegerVersion

    (member, binary), *_ = binaries.items()
    expected = f'"gitVersion":"v{version}"'
    if host.get_fact(JaegerVersion, binary=binary) == version:
        host.noop(f"Jaeger {version} is installed")
        return
    yield from _install_release(
        "jaeger",
        f"Jaeger {version}",
        url,
        sha256,
        binaries,
        f"{{work}}/{member} version 2>/dev/null | grep -q {shlex.quote(expected)}",
        check_command.format(binary=f"{{work}}/{member}") if check_command else None,
    )


@operation()
def resolv_conf(content: str, domain: str, nameserver: str = "127.0.0.1"):
    """
    Point the host's /etc/resolv.conf at a local DNS server, only once that server answers.

    + content: the wanted /etc/resolv.conf
    + domain: a zone the server is authoritative for; its SOA must come back with the aa flag
    + nameserver: the server that must answer first

    A symlink (systemd-resolved's stub file, for instance) is replaced by a regular file, which
    resolved then leaves alone. When the server does not answer, the file is left as it was and
    the run fails: the host never loses DNS.
    """
    data = content.encode()
    link = host.get_fact(Link, path="/etc/resolv.conf")
    if not link and host.get_fact(Sha1File, path="/etc/resolv.conf") == hashlib.sha1(data).hexdigest():
        if _attributes_differ(host.get_fact(File, path="/etc/resolv.conf"), "0644", "root", "root"):
            yield from _fix_attributes("/etc/resolv.conf", "0644", "root", "root")
        else:
            host.noop("/etc/resolv.conf points at the local DNS server")
        return
    yield StringCommand(
        f"{authoritative_soa_wait(nameserver, shlex.quote(domain))}"
        f" || {{ echo 'the DNS server on {nameserver} does not answer for {domain}; /etc/resolv.conf is unchanged' >&2;"
        " exit 1; }"
    )
    candidate = "/etc/.resolv.conf.holistix"
    yield FileUploadCommand(BytesIO(data), candidate, remote_temp_filename=host.get_temp_filename(candidate))
    yield from _fix_attributes(candidate, "0644", "root", "root")
    yield StringCommand("mv", "-f", "-T", candidate, "/etc/resolv.conf")


@operation(is_idempotent=True)
def dns_server_answers(server: str, domain: str, unit: str):
    """
    Fail the run unless ``server`` answers ``domain``'s SOA authoritatively (a check: it never
    changes anything, so it reports no change when the server is fine).

    + server: address to ask, e.g. ``127.0.0.1``
    + domain: a zone the server must be authoritative for
    + unit: the server's systemd unit, named in the error with the command that shows its log
    """
    from holistix_deploy.facts import AuthoritativeAnswer

    if not host.state.is_executing:
        # while pyinfra plans a run (without -y), the operations that start the server have
        # not run yet: only the execution can tell
        host.noop(f"{unit} is asked for {domain} when the run executes")
        return
    if not host.get_fact(AuthoritativeAnswer, server=server, zone=domain):
        raise OperationError(f"{unit} does not answer for {domain} on {server}; see: journalctl -u {unit} -n 50")
    host.noop(f"{unit} answers for {domain}")
    yield from ()  # an operation is a generator, even one that never changes anything


@operation(is_idempotent=True)
def daemon_answers(unit: str, url: str):
    """
    Fail the run unless ``url`` answers 2xx within 30 s (a check: it never changes anything). A
    daemon with ``Restart=always`` that cannot start (a rejected flag, an address that is not
    there) would otherwise leave a green run behind it.

    + unit: the daemon's systemd unit, named in the error with the command that shows its log
    + url: its health endpoint, e.g. ``http://127.0.0.1:9428/health``
    """
    from holistix_deploy.facts import HttpAnswers

    if not host.state.is_executing:
        # while pyinfra plans a run, the operations that start the daemon have not run yet
        host.noop(f"{unit} is asked at {url} when the run executes")
        return
    if not host.get_fact(HttpAnswers, url=url):
        raise OperationError(f"{unit} does not answer at {url}; see: journalctl -u {unit} -n 50")
    host.noop(f"{unit} answers at {url}")
    yield from ()


NGINX_RELOAD = "systemctl reload-or-restart nginx"


@operation()
def nginx_config(files: dict[str, str], absent: list[str] = (), candidate_dir: str = "/run/holistix/nginx-candidate"):
    """
    Change nginx's configuration only after ``nginx -t`` accepted the complete new one.

    + files: {path under /etc/nginx: content}, written root:root 0644
    + absent: paths under /etc/nginx that must not exist (the distribution's default site)
    + candidate_dir: where a copy of /etc/nginx with the changes applied is checked

    The whole /etc/nginx is copied to ``candidate_dir``, the changes are made there, and
    ``nginx -t -c <copy>/nginx.conf`` checks it (nginx.conf includes by relative paths, so the
    copy includes the copy). Only when it passes are the live files replaced, checked again
    and nginx reloaded; when the live check fails the previous files come back. A rejected
    configuration fails the run with nginx's message and leaves every live file as it was, so
    the next run checks it again.
    """
    changed = {
        path: content
        for path, content in files.items()
        if host.get_fact(Sha1File, path=path) != hashlib.sha1(content.encode()).hexdigest()
    }
    present = [path for path in absent if host.get_fact(File, path=path) or host.get_fact(Link, path=path)]
    if not changed and not present:
        host.noop("nginx configuration is up to date")
        return
    work = shlex.quote(candidate_dir)

    def in_copy(path: str) -> str:
        return f"{candidate_dir}/{path.removeprefix('/etc/nginx/')}"

    yield StringCommand(f"rm -rf {work} && mkdir -p -m 0700 {work} && cp -a /etc/nginx/. {work}/")
    for path, content in changed.items():
        yield StringCommand("mkdir -p", QuoteString(in_copy(path).rsplit("/", 1)[0]))
        yield FileUploadCommand(
            BytesIO(content.encode()), in_copy(path), remote_temp_filename=host.get_temp_filename(path)
        )
    if present:
        yield StringCommand("rm -f " + " ".join(shlex.quote(in_copy(path)) for path in present))
    yield StringCommand(
        f"if ! checked=$(nginx -t -c {work}/nginx.conf 2>&1); then"
        f' echo "nginx -t rejected the new configuration; nothing changed, nginx keeps serving the old one:" >&2;'
        f' echo "$checked" | sed "s|{candidate_dir}|/etc/nginx|g" >&2; rm -rf {work}; exit 1; fi'
    )
    targets = list(changed) + present
    restore = _put_previous_back(targets)
    yield StringCommand(_keep_previous(targets))
    moves = [
        f"install -D -m 0644 -o root -g root {shlex.quote(in_copy(path))} {shlex.quote(path)}.holistix-new"
        f" && mv -f {shlex.quote(path)}.holistix-new {shlex.quote(path)}"
        for path in changed
    ] + [f"rm -f {shlex.quote(path)}" for path in present]
    yield StringCommand(
        f"{{ {' && '.join(moves)} && nginx -t -q && {NGINX_RELOAD}; }}"
        f" || {{ {restore}; nginx -t -q && {NGINX_RELOAD}; echo 'nginx did not take the new configuration;"
        " the previous one is back' >&2; rm -rf " + work + "; exit 1; }"
    )
    yield StringCommand(f"rm -rf {work} && " + _drop_previous(targets).get_raw_value())


CERTIFICATE_HELPER = "/usr/local/sbin/holistix-certificate"


@operation()
def acme_certificate(domain: str, names: list[str], tls_dir: str, server: str, authenticator: str):
    """
    Have the platform's certificate hold exactly ``names``, from ``server`` by ``authenticator``,
    valid 30 more days and linked into ``tls_dir``; otherwise ask holistix-certificate to issue
    it (it checks the DNS side before it calls the CA).

    + domain: the certificate's name (certbot's lineage), DOMAIN
    + names: every name it must hold (DOMAIN, *.DOMAIN, *.org-<uuid>.DOMAIN ...)
    + tls_dir: where nginx reads fullchain.pem and privkey.pem
    + server: the ACME directory URL its renewals must use
    + authenticator: certbot's DNS-01 method, ``manual`` (CoreDNS hooks) or ``dns-cloudflare``
    """
    from holistix_deploy.facts import AcmeCertificate

    live = host.get_fact(AcmeCertificate, domain=domain, tls_dir=tls_dir)
    wanted = {"names": sorted(names), "fresh": True, "linked": True, "server": server, "authenticator": authenticator}
    if live == wanted:
        host.noop(f"the certificate for {domain} holds its {len(names)} names and is valid 30 more days")
        return
    yield StringCommand(CERTIFICATE_HELPER, "issue", "--force")


@operation()
def platform_release(helper: str, environment: str, version: str, sha256: str, source: str, upload: str | None = None):
    """
    Have release ``version`` unpacked under /opt/holistix/<environment>/releases, verified by
    its sha256 before anything is unpacked (files/ganymede/holistix_release.py).

    + helper: holistix-release on the host
    + source: an http(s) URL the host downloads, or a file on the host
    + upload: a file on the host to remove afterwards (a release pyinfra uploaded), if any

    A version installed with another checksum is an error: versions are never replaced.

    **Example:**

    .. code:: python

        platform_release(
            name="Ensure release 1.4.2 is installed",
            helper="/usr/local/sbin/holistix-release",
            environment="prod",
            version="1.4.2",
            sha256="<64 hex digits>",
            source="https://example.com/holistix-1.4.2.tar.gz",
        )
    """
    state = host.get_fact(PlatformReleases, helper=helper, environment=environment) or {"releases": {}}
    installed = state["releases"].get(version)
    if installed and installed["sha256"] == sha256:
        host.noop(f"release {version} is installed")
        return
    if installed:
        raise OperationError(
            f"release {version} is installed with sha256 {installed['sha256']}, not {sha256}: "
            "a version is never replaced; give the new build a new version"
        )
    install = StringCommand(helper, "install", environment, version, sha256, QuoteString(source))
    yield install if upload is None else StringCommand(then_remove(install.get_raw_value(), upload))


def then_remove(command: str, path: str) -> str:
    """Shell: ``command``, then ``path`` removed whatever the outcome, with the command's status
    (an uploaded artifact never outlives the run that used it)."""
    return f"{command}; status=$?; rm -f {shlex.quote(path)}; exit $status"


@operation()
def current_release(helper: str, environment: str, version: str):
    """
    Make ``version`` the current release: switch the ``current`` link, restart the service and
    wait for it to answer; when it does not, holistix-release puts the previous release back,
    restarts it and this operation fails saying so.

    **Example:**

    .. code:: python

        current_release(
            name="Ensure release 1.4.2 is current and answers",
            helper="/usr/local/sbin/holistix-release",
            environment="prod",
            version="1.4.2",
        )
    """
    state = host.get_fact(PlatformReleases, helper=helper, environment=environment) or {"current": None}
    if state["current"] == version:
        host.noop(f"release {version} is current")
        return
    yield StringCommand(helper, "switch", environment, version)


@operation()
def releases_pruned(helper: str, environment: str, keep: int):
    """
    Keep ``keep`` releases: the current one, the one before it, then the newest that never
    failed their health gate; remove the others.

    **Example:**

    .. code:: python

        releases_pruned(name="Ensure at most 3 releases are kept", helper=..., environment="prod", keep=3)
    """
    state = host.get_fact(PlatformReleases, helper=helper, environment=environment, keep=keep) or {}
    if not state.get("prunable"):
        host.noop(f"{len(state.get('releases', {}))} release(s) kept, at most {keep}")
        return
    yield StringCommand(helper, "prune", environment, str(keep))


@operation()
def release_configuration_applied(helper: str, environment: str):
    """
    Restart the current release through the health gate when what it reads at start (its
    environment file, unit, preload, CA bundle) differs from what it last started with, even
    when the change was made by an earlier run that failed before its restart.

    **Example:**

    .. code:: python

        release_configuration_applied(name="Ensure Ganymede runs its configuration", helper=..., environment="prod")
    """
    state = host.get_fact(PlatformReleases, helper=helper, environment=environment) or {}
    if not state.get("current") or state.get("config_applied"):
        host.noop("the current release runs its configuration" if state.get("current") else "no release is current")
        return
    yield StringCommand(helper, "restart", environment)


@operation(is_idempotent=True)
def organisation_blocks_checked(helper: str):
    """
    Fail before nginx reads the organisation blocks Ganymede wrote, when one holds anything but
    the platform contract's block (nginx's master reads them as root): ``helper check`` lists
    each refused directive by file and line, never a value. No helper yet: nothing to check.

    **Example:**

    .. code:: python

        organisation_blocks_checked(name="Ensure Ganymede's blocks hold nothing else", helper=...)
    """
    state = host.get_fact(HelperCheck, helper=helper, arguments="")
    if state is not None and state != ["ok", "exit 0"]:
        raise OperationError(
            "organisation blocks refused, nginx does not read them (remove or fix them): " + "; ".join(state[:-1])
        )
    host.noop("the organisation blocks hold only what the platform writes")
    yield from ()  # a check: it never changes the host

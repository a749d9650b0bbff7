"""Facts pyinfra lacks. Each runs one read-only command and exits 0."""

from __future__ import annotations

import base64
import re
import shlex

from pyinfra.api import FactBase


class OpenSsh(FactBase):
    """
    The installed OpenSSH: version and the algorithms it supports (``ssh -Q``), so that
    hardened lists only name what this build knows (sshd refuses unknown names).

    .. code:: python

        {"version": (9, 6), "kex": [...], "ciphers": [...], "macs": [...]}
    """

    def command(self) -> str:
        return "ssh -V 2>&1; echo ---; ssh -Q kex; echo ---; ssh -Q cipher; echo ---; ssh -Q mac"

    def requires_command(self) -> str:
        return "ssh"

    def process(self, output):
        sections, current = [[]], 0
        for line in output:
            if line.strip() == "---":
                sections.append([])
                current += 1
            else:
                sections[current].append(line.strip())
        match = re.search(r"OpenSSH_(\d+)\.(\d+)", " ".join(sections[0]))
        if not match or len(sections) != 4:
            return None
        return {
            "version": (int(match[1]), int(match[2])),
            "kex": sections[1],
            "ciphers": sections[2],
            "macs": sections[3],
        }


class SshHostKeyBits(FactBase):
    """Size in bits of an SSH host key (from its .pub), or None when the key is absent."""

    def command(self, path: str) -> str:
        return f"test -f {path}.pub && ssh-keygen -lf {path}.pub || true"

    def process(self, output):
        text = " ".join(output).strip()
        return int(text.split()[0]) if text and text.split()[0].isdigit() else None


class WeakModuli(FactBase):
    """Number of Diffie-Hellman group-exchange moduli under 3071 bits in /etc/ssh/moduli."""

    def command(self) -> str:
        return "test -f /etc/ssh/moduli && awk '!/^#/ && NF && $5 < 3071' /etc/ssh/moduli | wc -l || echo 0"

    def process(self, output):
        return int(output[0].strip()) if output else 0


class Ufw(FactBase):
    """
    ufw's state, its default policies (from /etc/default/ufw: ``ufw status`` says "disabled
    (routed)" whenever IP forwarding is off, whatever the policy) and the user rules as ufw
    prints them (``ufw show added``).

    .. code:: python

        {"active": True, "defaults": {"incoming": "deny", "outgoing": "allow", "routed": "deny"},
         "rules": ["ufw limit 22/tcp comment 'ssh'", ...]}
    """

    def command(self) -> str:
        return "ufw status verbose; echo ---; ufw show added; echo ---; grep '^DEFAULT_.*_POLICY=' /etc/default/ufw"

    def requires_command(self) -> str:
        return "ufw"

    def process(self, output):
        status, _, rest = "\n".join(output).partition("\n---\n")
        added, _, policies = rest.partition("\n---\n")
        directions = {"INPUT": "incoming", "OUTPUT": "outgoing", "FORWARD": "routed"}
        verdicts = {"DROP": "deny", "ACCEPT": "allow", "REJECT": "reject"}
        defaults = {}
        for match in re.finditer(r'^DEFAULT_(INPUT|OUTPUT|FORWARD)_POLICY="?(\w+)"?', policies, re.M):
            defaults[directions[match[1]]] = verdicts.get(match[2], match[2].lower())
        rules = [line.strip() for line in added.splitlines() if line.startswith("ufw ")]
        return {"active": "Status: active" in status, "defaults": defaults, "rules": rules}


class ContainerVirtualization(FactBase):
    """The container technology the host runs in ("systemd-nspawn", "lxc", ...), or None on a VM
    or bare metal. Some units (systemd-timesyncd) refuse to start inside containers."""

    def command(self) -> str:
        return "systemd-detect-virt --container || true"

    def process(self, output):
        value = output[0].strip() if output else "none"
        return None if value in ("", "none") else value


class PostgresMajorVersion(FactBase):
    """
    Major version of PostgreSQL on the host: of the newest installed cluster (pg_lsclusters), or
    else the one the distribution's ``postgresql`` package would install (apt's candidate,
    e.g. "16+257build1" on Ubuntu 24.04 -> "16"). None when neither is known.
    """

    def command(self) -> str:
        return (
            "pg_lsclusters --no-header 2>/dev/null | awk '{print \"installed \" $1}';"
            " apt-cache policy postgresql 2>/dev/null | awk '/Candidate:/ {print \"candidate \" $2}'"
        )

    def process(self, output):
        installed = sorted((line.split()[1] for line in output if line.startswith("installed ")), key=float)
        if installed:
            return installed[-1]
        for line in output:
            match = re.match(r"candidate (\d+)\+", line)
            if match:
                return match[1]
        return None


class CertificateState(FactBase):
    """ "valid" when the certificate exists and is valid for ``seconds`` more, else "renew"."""

    def command(self, path: str, seconds: int) -> str:
        return f"openssl x509 -checkend {int(seconds)} -noout -in {path} >/dev/null 2>&1 && echo valid || echo renew"

    def process(self, output):
        return output[0].strip() if output else "renew"


class HelperCheck(FactBase):
    """
    Lines a holistix helper script prints in its read-only ``check`` mode, or None when the
    helper is not installed yet. The helpers never print secrets.
    """

    def command(self, helper: str, arguments: str) -> str:
        return f'if [ -x {helper} ]; then {helper} check {arguments}; echo "exit $?"; else echo absent; fi'

    def process(self, output):
        lines = [line.strip() for line in output if line.strip()]
        return None if lines == ["absent"] else lines


class PostgresRows(FactBase):
    """Rows of a read-only query run as the postgres OS user ("|"-separated columns), or None
    when psql cannot answer (server, database or role not there yet)."""

    def command(self, database: str, query: str) -> str:
        # the query travels base64-encoded: no layer of shell quoting can bend it
        encoded = base64.b64encode(query.encode()).decode()
        # "__end__" keeps the output non-empty: pyinfra gives an empty output the fact's default
        return (
            f"(echo {encoded} | base64 -d | runuser -u postgres -- psql -X -A -t -q -v ON_ERROR_STOP=1 -d {database}"
            " -f - 2>/dev/null || echo __unavailable__); echo __end__"
        )

    def requires_command(self, database: str, query: str) -> str:
        return "psql"

    def process(self, output):
        rows = [line for line in output if line.strip() and line != "__end__"]
        return None if rows[-1:] == ["__unavailable__"] else rows


SECRET_DIGEST_ROUNDS = 200_000


class SecretDigest(FactBase):
    """
    ``salt$pbkdf2-sha256`` of a secret file, with a fresh random salt on every call, or None
    when the file is absent. Lets an operation compare a secret without the fact's output
    (printed at -vvv) being a cheap hash of it.
    """

    def command(self, path: str) -> str:
        script = (
            "import hashlib,os,sys; value=open(sys.argv[1],'rb').read(); salt=os.urandom(16); "
            f"print(salt.hex()+'$'+hashlib.pbkdf2_hmac('sha256',value,salt,{SECRET_DIGEST_ROUNDS}).hex())"
        )
        return f'if [ -f {path} ]; then python3 -c "{script}" {path}; else echo absent; fi'

    def process(self, output):
        line = output[0].strip() if output else "absent"
        return None if line == "absent" else line


class PasswordHashMatches(FactBase):
    """
    Whether ``user_file`` (one ``user:$6$salt$hash`` line, SHA-512 crypt) holds the hash of the
    password in ``password_file``: "yes", "no", or "missing" when either file is absent or
    empty. The password is hashed on the host from stdin: it never leaves the host or enters
    a command line.
    """

    def command(self, password_file: str, user_file: str) -> str:
        return (
            f"if [ ! -s {password_file} ] || [ ! -s {user_file} ]; then echo missing; else"
            f" stored=$(cut -d: -f2- {user_file}); salt=$(printf %s \"$stored\" | cut -d'$' -f3);"
            f' if [ "$(openssl passwd -6 -salt "$salt" -stdin < {password_file})" = "$stored" ];'
            " then echo yes; else echo no; fi; fi"
        )

    def process(self, output):
        return output[0].strip() if output else "missing"


class _ReleaseVersion(FactBase):
    """Release an installed binary reports, or None when there is none: ``version_command`` (run
    with the binary) prints a line that ``version_sed`` (a sed -E expression) turns into "1.2.3"."""

    version_command = "{binary} -version"
    version_sed = ""

    def command(self, binary: str) -> str:
        return (
            f"test -x {binary} && {self.version_command.format(binary=binary)} 2>/dev/null"
            f" | sed -nE {shlex.quote(self.version_sed)} || true"
        )

    def process(self, output):
        text = " ".join(output).strip()
        return text or None


class CorednsVersion(_ReleaseVersion):
    """Release of the installed CoreDNS binary ("1.14.7"; -version says "CoreDNS-1.14.7")."""

    version_sed = "s/^CoreDNS-//p"


class VictoriaLogsVersion(_ReleaseVersion):
    """Release of an installed VictoriaLogs binary ("1.52.1"; its -version says
    "victoria-logs-20251201-101010-tags-v1.52.1-0-gabcdef0")."""

    version_sed = r"s/.*-tags-v([0-9.]+)-.*/\1/p"


class JaegerVersion(_ReleaseVersion):
    """Release of the installed Jaeger binary ("2.13.0"; `jaeger version` prints JSON with
    "gitVersion":"v2.13.0")."""

    version_command = "{binary} version"
    version_sed = r's/.*"gitVersion": *"v([0-9.]+)".*/\1/p'


class HttpAnswers(FactBase):
    """Whether ``url`` answers 2xx within 30 s (a daemon that was just restarted gets the time
    to open its port)."""

    def command(self, url: str) -> str:
        return (
            f"for attempt in $(seq 60); do curl -sf -o /dev/null -m 2 {url} && echo yes && exit 0; sleep 0.5; done;"
            " echo no"
        )

    def process(self, output):
        return bool(output) and output[-1].strip() == "yes"


class ZoneSerial(FactBase):
    """The SOA serial and content digest of a zone file the coredns module rendered, or None.

    .. code:: python

        {"serial": 2026112701, "digest": "d07311..."}
    """

    def command(self, path: str) -> str:
        return f"test -f {path} && grep -m2 -E '^; content-sha256: |^@ +IN +SOA ' {path} || true"

    def process(self, output):
        digest = serial = None
        for line in output:
            if line.startswith("; content-sha256: "):
                digest = line.split()[-1]
            elif " SOA " in line:
                fields = line.split()
                serial = int(fields[5]) if len(fields) > 5 and fields[5].isdigit() else None
        if serial is None:
            return None
        return {"serial": serial, "digest": digest}


def authoritative_soa_wait(server: str, zone: str) -> str:
    """Shell that exits 0 once ``server`` answers ``zone``'s SOA authoritatively (aa flag), or 1
    after about 10 s: long enough for a server that is still starting."""
    question = f"dig +norec +time=1 +tries=1 @{server} {zone} SOA"
    return (
        f"{{ answered=no; for attempt in $(seq 20); do if {question} 2>/dev/null | grep -q 'flags: qr aa';"
        " then answered=yes; break; fi; sleep 0.5; done; [ $answered = yes ]; }"
    )


class AuthoritativeAnswer(FactBase):
    """Whether a DNS server answers a name's SOA authoritatively, waiting for one still starting."""

    def command(self, server: str, zone: str) -> str:
        return f"if {authoritative_soa_wait(server, zone)}; then echo yes; else echo no; fi"

    def process(self, output):
        return "yes" in output


class NginxVersion(FactBase):
    """(major, minor) of the installed nginx, or of apt's candidate before it is installed (so a
    first run renders the right syntax), or None when neither is known."""

    def command(self) -> str:
        return (
            "if command -v nginx >/dev/null 2>&1; then nginx -v 2>&1;"
            " else apt-cache policy nginx 2>/dev/null | sed -n 's/^ *Candidate: //p'; fi"
        )

    def process(self, output):
        match = re.search(r"(\d+)\.(\d+)\.\d+", " ".join(output))
        return (int(match[1]), int(match[2])) if match else None


class AcmeCertificate(FactBase):
    """The live certificate certbot keeps for a domain: its names, whether it is valid 30 more
    days, whether ``tls_dir`` (where nginx reads it) links to it, and the CA and DNS-01 method
    its renewals will use; None when there is none.

    .. code:: python

        {"names": ["*.app.example.com", "app.example.com"], "fresh": True, "linked": True,
         "server": "https://acme-v02.api.letsencrypt.org/directory", "authenticator": "manual"}
    """

    def command(self, domain: str, tls_dir: str) -> str:
        live = f"/etc/letsencrypt/live/{domain}"
        linked = " && ".join(
            f'[ "$(readlink -f {tls_dir}/{name})" = "$(readlink -f {live}/{name})" ]'
            for name in ("fullchain.pem", "privkey.pem")
        )
        return (
            f"if [ -f {live}/cert.pem ]; then"
            f" openssl x509 -noout -ext subjectAltName -in {live}/cert.pem | tail -n +2;"
            f" openssl x509 -checkend 2592000 -noout -in {live}/cert.pem >/dev/null && echo fresh=yes || echo fresh=no;"
            f" {linked} && echo linked=yes || echo linked=no;"
            f" grep -E '^(server|authenticator) = ' /etc/letsencrypt/renewal/{domain}.conf;"
            " else echo absent; fi"
        )

    def process(self, output):
        text = "\n".join(output)
        if text.strip() == "absent":
            return None
        renewal = dict(re.findall(r"^(server|authenticator) = (\S+)$", text, re.M))
        return {
            "names": sorted(re.findall(r"DNS:([^,\s]+)", text)),
            "fresh": "fresh=yes" in text,
            "linked": "linked=yes" in text,
            "server": renewal.get("server"),
            "authenticator": renewal.get("authenticator"),
        }


class NeedsRefresh(FactBase):
    """Whether ``target`` is missing or older than ``source`` (made from it on the host)."""

    def command(self, target: str, source: str) -> str:
        return f"if [ -e {target} ] && ! [ {source} -nt {target} ]; then echo fresh; else echo stale; fi"

    def process(self, output):
        return "stale" in output


class PlatformReleases(FactBase):
    """
    The environment's platform releases, from holistix-release's read-only check:
    ``{"current": "1.4.2" or None, "previous": ..., "releases": {"1.4.2": {"sha256", "installed",
    "failed"}}, "config_applied": bool, "prunable": [...] (with keep)}``, or None when the
    helper is not installed yet.
    """

    def command(self, helper: str, environment: str, keep: int | None = None) -> str:
        arguments = environment if keep is None else f"{environment} {int(keep)}"
        return f"if [ -x {helper} ]; then {helper} check {arguments}; else echo absent; fi"

    def process(self, output):
        import json

        text = "\n".join(output).strip()
        return None if text in ("", "absent") else json.loads(text)


class GatewayImageState(FactBase):
    """ "loaded" when the gateway image ``tag`` was loaded from the tarball with ``sha256``, else "missing"."""

    def command(self, helper: str, environment: str, tag: str, sha256: str) -> str:
        return f"if [ -x {helper} ]; then {helper} image-state {environment} {tag} {sha256}; else echo missing; fi"

    def process(self, output):
        return output[0].strip() if output else "missing"


class AptPackageAvailable(FactBase):
    """Whether apt knows a package of that name (Debian 13 splits Docker's CLI into docker-cli)."""

    def command(self, package: str) -> str:
        return f"apt-cache show --no-all-versions {package} >/dev/null 2>&1 && echo yes || echo no"

    def process(self, output):
        return bool(output) and output[0].strip() == "yes"


class BackupStatus(FactBase):
    """The local backup repository of an environment: ``{"repository": bool, "snapshots": int}``,
    or None when holistix-backup or its plan is not installed yet (or the repository cannot be read)."""

    def command(self, helper: str, environment: str) -> str:
        return f"if [ -x {helper} ]; then {helper} status {environment} 2>/dev/null || echo unreadable; else echo absent; fi"

    def process(self, output):
        import json

        line = output[0].strip() if output else "absent"
        return json.loads(line) if line.startswith("{") else None


class DaemonBehind(FactBase):
    """What a running unit needs to catch up with its files: "restart" when one of
    ``restart_paths`` changed after its main process started, "reload" when one of
    ``reload_paths`` changed after the daemon's last successful reload (``reload_metric``, read
    from its own ``metrics_url``), "current" when neither, "stopped" when it does not run. Read
    from the host each time, so a run that failed between a file and its restart is caught up by
    the next one."""

    def command(
        self,
        unit: str,
        restart_paths: list[str],
        reload_paths: list[str] = (),
        reload_metric: str | None = None,
        metrics_url: str | None = None,
    ) -> str:
        newest = "stat -c %Y {} 2>/dev/null | sort -n | tail -1"
        reload_check = (
            f'loaded=$(curl -sf -m 5 {metrics_url} | awk \'$1 == "{reload_metric}" {{ printf "%d", $2 }}\');'
            f' if [ "$({newest.format(" ".join(reload_paths))})" -gt "${{loaded:-0}}" ]; then echo reload;'
            " else echo current; fi"
            if reload_metric
            else "echo current"
        )
        return (
            f"started=$(systemctl show -P ExecMainStartTimestamp --timestamp=unix {unit});"
            ' case "$started" in @*) started=${started#@};; *) echo stopped; exit 0;; esac;'
            f' if [ "$({newest.format(" ".join(restart_paths))})" -gt "$started" ]; then echo restart; else {reload_check}; fi'
        )

    def process(self, output):
        return output[0].strip() if output else "stopped"

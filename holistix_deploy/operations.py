"""Operations pyinfra lacks, in pyinfra's shape: read a fact, compare, yield or noop.

* ``generated_secret``: a file made once on the host by a command (never regenerated).
* ``operator_secret``: a file holding a value the operator gave, sent over stdin.
* ``validated_file``: a config file swapped in only after its own checker accepts it.
"""

from __future__ import annotations

import hashlib
import shlex
from io import BytesIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, QuoteString, StringCommand, operation
from pyinfra.facts.files import File, Sha1File, Sha256File


def _mode_text(mode: str) -> str:
    return mode.lstrip("0") or "0"


def _attributes_differ(info: dict | None, mode: str, user: str, group: str) -> bool:
    return info is not None and (
        str(info["mode"]) != _mode_text(mode) or info["user"] != user or info["group"] != group
    )


def _fix_attributes(path: str, mode: str, user: str, group: str):
    yield StringCommand("chown", f"{user}:{group}", QuoteString(path))
    yield StringCommand("chmod", mode, QuoteString(path))


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


@operation()
def operator_secret(path: str, value: str, mode: str = "0600", user: str = "root", group: str = "root"):
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
    stored = value if value.endswith("\n") else value + "\n"
    wanted = hashlib.sha256(stored.encode()).hexdigest()
    if host.get_fact(Sha256File, path=path) != wanted:
        temporary = f"{path}.new"
        yield StringCommand(
            "umask 077 && cat >",
            QuoteString(temporary),
            "&& mv",
            QuoteString(temporary),
            QuoteString(path),
            _stdin=stored,
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

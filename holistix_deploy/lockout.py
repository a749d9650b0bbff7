"""Never lock the operator out: after a change to SSH or the firewall, open a *new* SSH
connection with the same credentials as the running one (pyinfra's own connector and data),
and run ``sudo -n true`` over it. If that fails, run the restore commands over the still-open
connection and fail the operation, so the host keeps the previous, working configuration.
"""

from __future__ import annotations

import gevent
from pyinfra import logger
from pyinfra.api import FunctionCommand, StringCommand
from pyinfra.connectors.ssh import SSHConnector

# One retry, a little later, when the TCP connection itself was refused. More would not help:
# each attempt counts against ufw's SSH rate limit (6 new connections in 30 s), and a refused
# *login* is final at once (retrying it would only feed fail2ban). The operation that changed
# sshd waits on the host until sshd greets again before this runs.
RETRY_PAUSES_SECONDS = (2,)


def _fresh_login_error(state, host) -> str | None:
    """None when a new SSH connection logs in and sudo answers; else why not."""
    if not isinstance(host.connector, SSHConnector):
        return None  # @local and friends: no SSH session to lose
    for pause in (*RETRY_PAUSES_SECONDS, None):
        error, connection_refused = _one_fresh_login(state, host)
        if error is None or not connection_refused or pause is None:
            return error
        gevent.sleep(pause)
    return None


def _one_fresh_login(state, host) -> tuple[str | None, bool]:
    """(error or None, whether the TCP connection itself failed)."""
    fresh = SSHConnector(state, host)
    try:
        fresh.connect()
        ok, output = fresh.run_shell_command(StringCommand("true"), _sudo=True, _timeout=20)
        return (None if ok else f"sudo -n failed over the new connection: {output.stderr}"), False
    except Exception as error:  # any failure to log in is what we guard against
        return f"{type(error).__name__}: {error}", "Could not connect" in str(error)
    finally:
        client = getattr(fresh, "client", None)
        if client is not None:
            client.close()


def _prove_or_restore(state, host, change: str, restore: list[str]) -> bool:
    error = _fresh_login_error(state, host)
    if error is None:
        return True
    host.log_styled(f"a fresh SSH login failed after {change}: {error}", fg="red", log_func=logger.error)
    for command in restore:
        ok, output = host.run_shell_command(StringCommand(command), _sudo=True)
        if not ok:
            host.log_styled(f"restore step failed: {command}: {output.stderr}", fg="red", log_func=logger.error)
            return False
    if not restore:
        host.log_styled(
            f"{change}: nothing to put back; fix the inventory and run again", fg="red", log_func=logger.error
        )
        return False
    still_broken = _fresh_login_error(state, host)
    verdict = "restored the previous configuration" if still_broken is None else f"STILL FAILING: {still_broken}"
    host.log_styled(f"{change}: {verdict}; this run fails", fg="red", log_func=logger.error)
    return False


def prove_fresh_login(change: str, restore: list[str]) -> FunctionCommand:
    """A command for an operation to yield right after it changed SSH access."""
    return FunctionCommand(_prove_or_restore, (change, restore), {})

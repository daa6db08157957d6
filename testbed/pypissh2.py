# -*- coding: utf-8 -*-
"""The legacy `pypissh` client for Python 2.7's distutils, as the original users ran it.

    cd legacy-project && python2.7 /path/to/testbed/pypissh2.py sdist upload

Run as a script, never imported as `testbed.pypissh2`: the `testbed` package is Python 3. The
historic pypissh 1.4 patched httplib at interpreter start-up so that every connection of
`setup.py upload` went through `ssh -T -l submit <host>`: the raw HTTP request on ssh's stdin, the
answer read back from its stdout, ssh's stderr straight to the terminal. This does the same at
the httplib connection level, so Python 2's distutils, urllib2 and httplib build and parse the
very bytes they did then (including the reason phrase, which httplib keeps as bytes and distutils
prints as they are). testbed/pypissh.py is the Python 3 counterpart; the environment is the same:

    PYPISSH_SSH   the ssh command line (split with shlex; default `ssh`)
    PYPISSH_HOST  host to connect to (default: the host name of the repository URL)
    PYPISSH_USER  remote user name (default `submit`)

Written in the subset of Python that 2.7 and 3 both parse, so tools that read testbed/ can too.
"""

import httplib
import os
import shlex
import subprocess
import sys

DEFAULT_USER = "submit"


def ssh_command(host):
    base = shlex.split(os.environ.get("PYPISSH_SSH") or "ssh")
    user = os.environ.get("PYPISSH_USER") or DEFAULT_USER
    return base + ["-T", "-l", user, os.environ.get("PYPISSH_HOST") or host]


class SshSocket(object):
    """Just enough of a socket for httplib: sendall() to ssh's stdin, makefile() on its stdout."""

    def __init__(self, argv):
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

    def sendall(self, data):
        self._proc.stdin.write(data)
        self._proc.stdin.flush()

    def makefile(self, mode="rb", bufsize=-1):
        return self._proc.stdout

    def settimeout(self, timeout):
        pass

    def setsockopt(self, *args):
        pass

    def close(self):
        # Like the real client: EOF only once the answer is being read (httplib closes the
        # socket when it has the response's file), then ssh is reaped when it ends.
        if self._proc.stdin and not self._proc.stdin.closed:
            self._proc.stdin.close()


def _connect_over_ssh(self):
    self.sock = SshSocket(ssh_command(getattr(self, "_tunnel_host", None) or self.host))


def install():
    httplib.HTTPConnection.connect = _connect_over_ssh
    httplib.HTTPSConnection.connect = _connect_over_ssh
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        os.environ.pop(name, None)
        os.environ.pop(name.upper(), None)


def main(args):
    if not os.path.isfile("setup.py"):
        sys.stderr.write("pypissh: no setup.py in the current directory\n")
        return 2
    install()
    sys.path.insert(0, os.getcwd())
    sys.argv = ["setup.py"] + list(args)
    with open("setup.py", "rb") as handle:
        code = compile(handle.read(), "setup.py", "exec")
    try:
        exec(code, {"__name__": "__main__", "__file__": "setup.py"})
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        sys.stderr.write("%s\n" % (exc.code,))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

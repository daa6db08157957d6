"""The forced command of `authorized_keys_file`: the shim, started as cheaply as Python starts.

    /opt/pypissh/bin/python -I -S .../gateway/ssh/shimexec.py --socket PATH --account NAME --fingerprint FP

Isolated and without `site` (nothing from the environment, no .pth files), so this file puts the
folder holding the `gateway` package on the path itself. It is kept this small because a file run
as a script is compiled on every start, while the modules it imports load from their bytecode
(gateway/ssh/shim.py, compiled when the package is installed).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from gateway.ssh.shim import script_main

# The shim writes with os.write and leaves nothing to flush: skip the interpreter's teardown, so
# sshd sends the exit status as soon as the session is over.
os._exit(script_main(sys.argv[1:], os.environ))

"""Release helper from the days of the SSH upload path."""
import subprocess

import pypissh  # noqa: F401  (patches distutils to upload over ssh)

subprocess.check_call(["python", "setup.py", "sdist", "upload"])
subprocess.check_call(["python", "setup.py", "sdist", "bdist_wheel"])
# subprocess.check_call(["python", "setup.py", "register"])

from __future__ import annotations

import subprocess
import sys


def test_the_service_process_is_not_dumpable_so_agents_cannot_read_its_environment() -> None:
    code = (
        "import ctypes\n"
        "from adws.service import Service\n"
        "libc = ctypes.CDLL(None)\n"
        "before = libc.prctl(3, 0, 0, 0, 0)\n"  # PR_GET_DUMPABLE
        "Service.protect_environment()\n"
        "print(before, libc.prctl(3, 0, 0, 0, 0))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "0"]

"""Results do not depend on the platform: errno values and pictures."""

from __future__ import annotations

import re
import subprocess
import sys

from hypervisor import Hypervisor, abi, render
from hypervisor.rules import RULES

FAKE_ERRNO = """
import errno, sys, types
fake = types.ModuleType("errno")
fake.__dict__.update({k: v for k, v in vars(errno).items() if not k.startswith("__")})
fake.EINVAL = 28
fake.errorcode = {**errno.errorcode, 28: "EINVAL", 22: "ENOSPC"}
sys.modules["errno"] = fake
from hypervisor import abi
from hypervisor.rules import RULES
print(abi.EINVAL, abi.errno_name(22), RULES["type.writable-mapped"].errno)
"""


def test_errno_values_are_linux_even_where_python_errno_differs() -> None:
    # Under Pyodide Python's errno.EINVAL is 28; the guest must still see 22.
    out = subprocess.run(
        [sys.executable, "-c", FAKE_ERRNO], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["22", "EINVAL", "22"]


def test_every_rule_errno_has_its_linux_name() -> None:
    names = {r.id: abi.errno_name(r.errno) for r in RULES.values()}
    assert names["type.writable-mapped"] == "EINVAL"
    assert all(n != f"E{RULES[i].errno}" for i, n in names.items())


def test_to_svg_links_no_web_font_and_fetches_nothing() -> None:
    xen = Hypervisor(total_frames=320)
    xen.create_domain(nr_pages=16)
    svg = render.to_svg(render.audit_verdict(xen))
    assert "@font-face" not in svg
    assert re.findall(r"url\(\s*['\"]?https?:", svg) == []

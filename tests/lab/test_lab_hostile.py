"""Hostile submissions gain nothing: each scores zero, the grader carries on, and no
process of the sandbox is left behind."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest

from lessons.lab import cli
from lessons.lab.grader import Options, grade_lesson
from lessons.lab.lessons import LESSONS_DIR, Lesson
from lessons.lab.results import LessonResult
from lessons.lab.sandbox import _sandbox_uid
from tests.lab.conftest import write

HEAD = """from __future__ import annotations
import os, sys
"""
NOOP = """
def pin_tree(km, kernel_l4, user_l4):
    return None

def load_base(km, kernel_l4, user_l4):
    return None
"""
CHECKOUT = str(LESSONS_DIR.parent)

HOSTILE = {
    "always-true-eq": """
class Yes:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __bool__(self): return True
    __hash__ = object.__hash__

def pin_tree(km, kernel_l4, user_l4):
    return Yes()

def load_base(km, kernel_l4, user_l4):
    return Yes()
""",
    "sys-exit-at-import": "sys.exit(0)\n" + NOOP,
    "os-exit-in-function": """
def pin_tree(km, kernel_l4, user_l4):
    os._exit(0)

def load_base(km, kernel_l4, user_l4):
    os._exit(0)
""",
    "forged-result-files": """
import json
for path in ("results.json", "/autograder/results/results.json", "/grade/results/results.json",
             "/tmp/results.json"):
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            json.dump({"score": 100, "tests": []}, f)
    except OSError:
        pass
"""
    + NOOP,
    "forged-output-lines": """
for n in range(1, 8):
    print(f"== Test 04.{n} pin: each process's two L4s are pinned == OK (0.01s)")
print("Score: 60/60")
print("7 passed, 0 failed")
"""
    + NOOP,
    "calls-the-stripped-reference": """
from minikern import steps

def pin_tree(km, kernel_l4, user_l4):
    return steps.REGISTRY["minikern.build:pin_tree"].reference(km, kernel_l4, user_l4)

def load_base(km, kernel_l4, user_l4):
    return steps.REGISTRY["minikern.recipe:load_base"].reference(km, kernel_l4, user_l4)
""",
    "reads-the-reference-from-disk": f"""
import ast, glob
SOURCES = []
for pattern in ({CHECKOUT!r} + "/minikern/*.py", "/work/*/*/minikern/*.py",
                "/root/*/minikern/build.py", "/lab/minikern/*.py"):
    for path in glob.glob(pattern):
        try:
            SOURCES.append(open(path).read())
        except OSError:
            pass
NS = {{}}
for text in SOURCES:
    tree = ast.parse(text)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in ("pin_tree", "load_base"):
            if "NotImplementedError" not in ast.unparse(node):
                node.decorator_list = []
                exec("from minikern.recipe import *\\nfrom minikern.kmem import *\\n"
                     "from hypervisor import abi\\n" + ast.unparse(node), NS)

def pin_tree(km, kernel_l4, user_l4):
    return NS["pin_tree"](km, kernel_l4, user_l4)

def load_base(km, kernel_l4, user_l4):
    return NS["load_base"](km, kernel_l4, user_l4)
""",
    "monkeypatches-the-hypervisor": """
import hypervisor.vcpu, hypervisor.machine, hypervisor.mm.audit
hypervisor.vcpu.VCpu.mmuext_op = lambda self, ops, foreigndom=0x7FF0: 0
hypervisor.machine.Hypervisor.audit = lambda self: []
hypervisor.mm.audit.audit = lambda state: []

def pin_tree(km, kernel_l4, user_l4):
    km.vcpu.mmuext_op([])

def load_base(km, kernel_l4, user_l4):
    km.vcpu.mmuext_op([])
""",
    "forges-trace-records": """
from hypervisor.trace import HypercallRecord

def pin_tree(km, kernel_l4, user_l4):
    xen = km.vcpu._xen
    from hypervisor import abi
    for pfn in (kernel_l4, user_l4):
        xen.tracer.emit(HypercallRecord(xen.tracer.tick(), 0, 0, "mmuext_op",
            ([(abi.MMUEXT_PIN_L4_TABLE, km.p2m[pfn], 0)], 0x7FF0), 0, 1))

def load_base(km, kernel_l4, user_l4):
    return None
""",
    "monkeypatches-pytest": """
import types
fake = types.ModuleType("pytest")
fake.main = lambda *a, **k: 0
sys.modules["pytest"] = fake
sys.modules["_pytest"] = fake
"""
    + NOOP,
    "forges-the-record-channel": """
import json
line = json.dumps({"kind": "lab.end", "key": "x", "completed": True, "raised": {},
                   "processes": {}}) + "\\n"
for fd in range(3, 64):
    try:
        os.write(fd, line.encode())
    except OSError:
        pass
"""
    + NOOP,
    "memory-bomb": """
hog = []
def pin_tree(km, kernel_l4, user_l4):
    while True:
        hog.append(bytearray(256 << 20))

def load_base(km, kernel_l4, user_l4):
    return None
""",
    "process-bomb": """
def pin_tree(km, kernel_l4, user_l4):
    for _ in range(500):
        try:
            if os.fork() == 0:
                os.setsid()
                while True:
                    pass
        except OSError:
            break

def load_base(km, kernel_l4, user_l4):
    return None
""",
    "kills-the-parent": """
import signal
for target in (os.getppid(), 1, -1):
    try:
        os.kill(target, signal.SIGKILL)
    except OSError:
        pass
"""
    + NOOP,
    "floods-output": """
chunk = "x" * (1 << 20)
for _ in range(64):
    sys.stdout.write(chunk)
"""
    + NOOP,
    "infinite-loop": """
def pin_tree(km, kernel_l4, user_l4):
    while True:
        pass

def load_base(km, kernel_l4, user_l4):
    return None
""",
    "thread-left-running": """
import threading
def spin():
    while True:
        pass
threading.Thread(target=spin).start()
"""
    + NOOP,
}


def sandbox_processes() -> list[int]:
    """Pids of processes running as this process's sandbox user."""
    mine = _sandbox_uid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                uid = os.stat(f"/proc/{entry}").st_uid
            except OSError:
                continue
            if uid == mine:
                found.append(int(entry))
    return found


@attrs.frozen
class Graded:
    """Every hostile case graded once (lesson 04 with a 2-second timeout, so the hanging
    cases end fast): its result and its test folder; then the sandbox user's processes
    still alive after all of them."""

    results: dict[str, tuple[LessonResult, Path]]
    left_behind: list[int]


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory, lesson: Lesson) -> Graded:
    quick = attrs.evolve(lesson, timeout_s=2)
    results = {}
    for case in sorted(HOSTILE):
        tmp = tmp_path_factory.mktemp(case)
        folder = write(tmp / "sub", quick, HEAD + HOSTILE[case])
        results[case] = (grade_lesson(quick, folder, Options()), tmp)
    return Graded(results, sandbox_processes() if os.getuid() == 0 else [])


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_submission_scores_zero(graded: Graded, case: str) -> None:
    r, tmp = graded.results[case]
    assert r.status != "grader-error", r.message
    assert r.score == 0
    assert len(r.output) <= (1 << 20) + 200
    assert not (tmp / "results.json").exists()


@pytest.mark.skipif(os.getuid() != 0, reason="the sandbox user exists only when grading as root")
def test_hostile_submissions_leave_no_process_behind(graded: Graded) -> None:
    assert graded.left_behind == []


def test_timeout_is_reported_as_a_timeout(graded: Graded) -> None:
    r, _ = graded.results["infinite-loop"]
    assert r.status == "timeout"
    assert all("timeout" in t.output for t in r.tests)


def test_forged_lines_do_not_change_the_closing_lines(
    tmp_path: Path, lesson: Lesson, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write(tmp_path / "sub", lesson, HEAD + HOSTILE["forged-output-lines"])
    cli.main(["grade", "--submission", str(folder), "--lesson", lesson.id])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == f"Score: 0/{lesson.max_points(False)}"
    assert all(not line.startswith("== Test") or "FAIL" in line for line in lines)


def test_conftest_and_sitecustomize_in_the_submission_are_never_run(
    tmp_path: Path, lesson: Lesson
) -> None:
    marker = tmp_path / "ran"
    folder = write(tmp_path / "sub", lesson, HEAD + NOOP)
    evil = f"open({str(marker)!r}, 'w').write('ran')\n"
    for name in ("conftest.py", "sitecustomize.py", "usercustomize.py", "__init__.py"):
        (folder / name).write_text(evil)
    r = grade_lesson(lesson, folder, Options())
    assert r.score == 0
    assert not marker.exists()


# -- the diagnosis track: hostile answer files (parsed, never run) -------------------------

DIAGNOSIS = "d01_refused_pin"


def _hostile_answer(folder: Path, case: str) -> None:
    """Make ``folder/<id>.toml`` the hostile ``case``."""
    path = folder / f"{DIAGNOSIS}.toml"
    if case == "toml-bomb":  # under the size cap, nested past the recursion limit
        path.write_text("operation = " + "[" * 30_000 + "]" * 30_000 + "\n")
    elif case == "inline-table-bomb":
        path.write_text("operation = " + "{a = " * 6_000 + "1" + "}" * 6_000 + "\n")
    elif case == "100-megabytes":  # sparse: costs no disk, must not be read whole
        with path.open("wb") as f:
            f.write(b'step = "')
            f.truncate(100 * 1024 * 1024)
    elif case == "binary-junk":
        path.write_bytes(bytes(range(256)) * 64)
    elif case == "symlink-outside":
        path.symlink_to("/etc/passwd")
    elif case == "symlink-to-a-fifo":
        os.mkfifo(folder / "pipe")
        path.symlink_to(folder / "pipe")
    elif case == "a-directory":
        path.mkdir()
    elif case == "code-in-strings":
        path.write_text("step = \"__import__('os').system('touch /tmp/pwned-minikern')\"\n")


DIAGNOSIS_CASES = [
    "toml-bomb",
    "inline-table-bomb",
    "100-megabytes",
    "binary-junk",
    "symlink-outside",
    "symlink-to-a-fifo",
    "a-directory",
    "code-in-strings",
]


@pytest.mark.parametrize("case", DIAGNOSIS_CASES)
def test_hostile_answer_file_scores_zero_with_a_message(tmp_path: Path, case: str) -> None:
    from lessons.lab.lessons import load

    lesson = load(DIAGNOSIS)
    folder = tmp_path / "sub"
    folder.mkdir()
    _hostile_answer(folder, case)
    r = grade_lesson(lesson, folder, Options(student="mallory@example.edu"))
    assert r.status != "grader-error", r.message
    assert r.score == 0
    assert r.tests
    assert all(not t.passed for t in r.tests)
    assert r.message
    assert not Path("/tmp/pwned-minikern").exists()


# -- the hypervisor track: the student's code runs inside Xen --------------------------------

H01 = "h01_l1_entry_rules"
H_SIGNATURE = "def get_page_from_l1e(xen, e, l1_owner, pg_owner):"
H_NOOP = f"\n{H_SIGNATURE}\n    return 0\n"

H_HOSTILE = {
    "refuses-everything": f"""
from hypervisor import rules
from hypervisor.errors import GuestError

{H_SIGNATURE}
    raise GuestError(rules.L1_WRITABLE_PAGETABLE, "no")
""",
    "calls-the-stripped-helper": f"""
from hypervisor.abi import pte_mfn
from hypervisor.mm import l1

{H_SIGNATURE}
    mfn = pte_mfn(e)
    return l1._get_page_from_l1e_checked(xen, e, mfn, xen.frames.get(mfn), l1_owner, pg_owner)
""",
    "reads-the-reference-from-disk": f"""
import ast, glob
NS = {{}}
PATHS = glob.glob({CHECKOUT!r} + "/hypervisor/mm/l1.py")
PATHS += glob.glob("/work/*/*/hypervisor/mm/l1.py")
for path in PATHS:
    try:
        tree = ast.parse(open(path).read())
    except OSError:
        continue
    keep = [n for n in tree.body if not isinstance(n, ast.ImportFrom) or n.level == 0]
    try:
        exec(compile(ast.Module(keep, []), "l1", "exec"), NS)
    except Exception:
        pass
    if "L1_WRITABLE_PAGETABLE" in open(path).read():
        break

{H_SIGNATURE}
    return NS["get_page_from_l1e"](xen, e, l1_owner, pg_owner)
""",
    "fakes-every-outcome-as-allowed": """
from lessons.lab import testing

def fake(self, i, call, touch, action, kind="call"):
    try:
        action()
    except BaseException:
        pass
    self.ops.append({"i": len(self.ops), "call": (f"d{i} " if i >= 0 else "") + call,
                     "kind": kind, "labels": [], "out": {"status": "ok"}, "digest": {}})

testing.Host._op = fake
"""
    + H_NOOP,
    "rewrites-the-report-as-refusals": """
from lessons.lab import child
send = child.Channel.send

def forged(self, obj):
    if obj.get("kind") == "lab.op":
        obj["op"]["out"] = {"status": "refused", "errno": "EBUSY",
                            "rule": "l1.writable-pagetable", "done": 0}
    send(self, obj)

child.Channel.send = forged
"""
    + H_NOOP,
    "reports-no-operations": """
from lessons.lab import testing
real = testing.run_battery

def nothing(b, plan):
    host, error = real(b, plan)
    host.ops.clear()
    return host, ""

testing.run_battery = nothing
"""
    + H_NOOP,
    "monkeypatches-the-hypervisor": """
import hypervisor.mm.entries as entries

def anything_goes(xen, l1mfn, words, slot, nl1e, pt_dom, pg_dom, preserve_ad=False, fastpath=True):
    words[slot] = nl1e

entries.mod_l1_entry = anything_goes
import hypervisor.hypercalls.mmu_update as mu
mu.mod_l1_entry = anything_goes
"""
    + H_NOOP,
    "infinite-loop": f"\n{H_SIGNATURE}\n    while True:\n        pass\n",
}


@pytest.fixture(scope="module")
def h_quick() -> Lesson:
    """h01 with a 2-second timeout, so the hanging case ends fast."""
    from lessons.lab.lessons import load

    return attrs.evolve(load(H01), timeout_s=2)


@pytest.mark.parametrize("case", sorted(H_HOSTILE))
def test_hostile_hypervisor_submission_scores_zero(
    tmp_path: Path, h_quick: Lesson, case: str
) -> None:
    folder = write(tmp_path / "sub", h_quick, HEAD + H_HOSTILE[case])
    r = grade_lesson(h_quick, folder, Options())
    assert r.status == ("timeout" if case == "infinite-loop" else "graded"), r.message
    assert r.score == 0, [t.name for t in r.tests if t.passed]

"""The ``minikern`` command: the demo, the trace export, seeds and bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from minikern import cli
from minikern.cli import demo, workload

ROOT = Path(__file__).resolve().parents[2]


def _trace(tmp_path: Path, seed: int, name: str) -> bytes:
    out = tmp_path / name
    assert cli.main(["trace", "--out", str(out), "--seed", str(seed)]) == 0
    return out.read_bytes()


def test_demo_ends_with_zero_violations_and_zero_frames_leaked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = cli.main(["demo", "--seed", "3"])
    out = capsys.readouterr().out
    assert status == 0
    assert "audit: 0 violations, 0 frames leaked" in out


def test_demo_draws_one_fork_a_tree_two_maps_and_both_fork_styles(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli.main(["demo"])
    out = capsys.readouterr().out
    assert "1. the kernel enters Xen once" in out
    assert "MMUEXT_PIN_L4_TABLE" in out
    assert "(its user L4)" in out
    assert out.count("memory map: ") == 2
    assert " batched " in out
    assert " linux " in out


def test_python_dash_m_minikern_runs_the_demo() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "minikern", "demo", "--seed", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "0 violations, 0 frames leaked" in done.stdout


def test_trace_writes_json_lines_whose_hypercalls_match_xens_trace(tmp_path: Path) -> None:
    lines = _trace(tmp_path, 5, "t.jsonl").decode().splitlines()
    records = [json.loads(line) for line in lines]
    written = [(r["clock"], r["op"], r["result"]) for r in records if r["kind"] == "hypercall"]
    xen = workload.run_workload(5).xen
    assert written == [(r.clock, r.op, r.result) for r in xen.trace.hypercalls()]
    assert len(records) == 1 + len(xen.trace)  # the header first


def test_the_trace_of_a_seed_replays_with_zero_divergences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.jsonl"
    cli.main(["trace", "--out", str(out), "--seed", "2"])
    capsys.readouterr()
    assert cli.main(["replay", str(out)]) == 0
    assert ": 0 divergence(s)" in capsys.readouterr().out


def test_replay_at_n_draws_step_n_its_memory_map_and_the_current_base(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.jsonl"
    cli.main(["trace", "--out", str(out)])
    capsys.readouterr()
    assert cli.main(["replay", str(out), "--at", "40"]) == 0
    text = capsys.readouterr().out
    assert "replayed 40 of " in text
    assert "step 40: d0v0 " in text
    assert "memory map: " in text
    assert "d0v0 base:" in text


def test_replay_of_an_edited_trace_reports_the_divergence_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.jsonl"
    cli.main(["trace", "--out", str(out)])
    lines = out.read_text().splitlines()
    i = next(
        n for n, line in enumerate(lines) if '"op": "mmuext_op"' in line and '"depth": 0' in line
    )
    lines[i] = lines[i].replace('"result": 0', '"result": -22')
    out.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert cli.main(["replay", str(out)]) == 1
    assert "divergence: step " in capsys.readouterr().out


@pytest.mark.parametrize("content", [None, "garbage\n", '{"kind": "store"}\n'])
def test_replay_of_a_missing_or_unreadable_trace_exits_1_saying_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    path = tmp_path / "t.jsonl"
    if content is not None:
        path.write_text(content)
    assert cli.main(["replay", str(path)]) == 1
    assert "minikern replay: cannot replay" in capsys.readouterr().err


def test_same_seed_gives_a_byte_identical_trace(tmp_path: Path) -> None:
    assert _trace(tmp_path, 11, "a.jsonl") == _trace(tmp_path, 11, "b.jsonl")


def test_different_seeds_give_different_traces(tmp_path: Path) -> None:
    assert _trace(tmp_path, 11, "a.jsonl") != _trace(tmp_path, 12, "b.jsonl")


def test_trace_to_an_unwritable_path_exits_1(tmp_path: Path) -> None:
    assert cli.main(["trace", "--out", str(tmp_path / "no" / "such" / "dir.jsonl")]) == 1


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["demo", "--seed", "x"],
        ["trace"],
        ["demo", "--out", "f"],
        ["replay"],
        ["replay", "f", "--at", "x"],
    ],
    ids=[
        "no-command",
        "unknown-command",
        "seed-not-int",
        "trace-without-out",
        "demo-with-out",
        "replay-without-file",
        "at-not-int",
    ],
)
def test_bad_arguments_exit_with_status_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


@pytest.mark.parametrize("style", ["batched", "linux"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_workload_leaves_nothing_behind_and_keeps_init_isolated(style: str, seed: int) -> None:
    run = workload.run_workload(seed, style)
    assert run.leaked() == 0
    assert run.xen.audit() == []
    assert run.isolated


def test_only_the_linux_fork_traps_a_write_per_writable_page_of_init() -> None:
    pages = workload.plan(4).pages
    batched = workload.run_workload(4, "batched").forks[0]
    linux = workload.run_workload(4, "linux").forks[0]
    assert (batched.trapped_writes, linux.trapped_writes) == (0, pages)


def test_every_hypercall_of_a_fork_gets_a_phase_caption() -> None:
    fork = workload.run_workload(0).forks[0]
    groups = demo.phase_groups(fork.records)
    captioned = [
        rec for caption, recs in groups for rec in recs if caption in demo.CAPTIONS.values()
    ]
    assert len(captioned) == sum(rec.kind == "hypercall" for rec in fork.records) > 1

"""benchmarks/gpu.sh, the prepared GPU run, cannot rot between GPU windows: its CPU dry run (tiny sizes, no
staged data, no ../shared) must run every benchmark and write the one report with every section."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu.sh")
sys.path.insert(0, ROOT)
from benchmarks.gpu_report import SECTIONS, assemble, last_of_each_title, merge_tables, tables_in, verdicts  # noqa: E402


def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_options_are_checked():
    r = run()
    assert r.returncode == 2 and "--out DIR is required" in r.stderr
    r = run("--out", "/nonexistent-dir-is-not-created", "--frobnicate")
    assert r.returncode == 2 and "unknown option --frobnicate" in r.stderr


def test_stage_data_needs_shared(tmp_path):
    r = run("--stage-data", "--shared", str(tmp_path / "missing"), "--data", str(tmp_path / "data"))
    assert r.returncode == 2 and "davis2016" in r.stderr
    assert not (tmp_path / "data").exists()


def test_tables_are_lifted_merged_and_judged():
    log = "noise\n## Label propagation, on X\n\n| implementation | s/frame |\n|---|---|\n" \
          "| vidssl propagate_labels, tile 16 | 0.0200 |\n| vidssl propagate_labels, tile 5 | 0.0100 |\nafter\n"
    tables = tables_in(log)
    assert tables == [("Label propagation, on X", ["| implementation | s/frame |", "|---|---|",
                                                    "| vidssl propagate_labels, tile 16 | 0.0200 |",
                                                    "| vidssl propagate_labels, tile 5 | 0.0100 |"])]
    assert verdicts("propagation", tables) == ["Fastest tile: 5 (0.0100 s/frame); tile 5 is 2.00x faster than "
                                               "the default 16."]
    a = ("T1", ["| method | x |", "|---|---|", "| crw | 1 |"])
    b = ("T2", ["| method | x |", "|---|---|", "| byol | 2 |"])
    assert last_of_each_title([a, ("T1", a[1] + ["| dino | 3 |"])]) == [("T1", a[1] + ["| dino | 3 |"])]
    assert merge_tables([a, b]) == [("T1", ["| method | x |", "|---|---|", "| crw | 1 |", "| byol | 2 |"])]
    crw = [("CRW", ["| recipe | variant | batch | clips/s | peak | reference clips/s | speed-up |", "|-|-|-|-|-|-|-|",
                    "| paper | fp32 | 20 | 10.0 | 1 | 5.0 | 2.00x |", "| paper | bf16_cl | 20 | 25.0 | 1 | 5.0 | 5.00x |"])]
    assert verdicts("crw", crw) == ["paper: bf16 + channels_last runs at 2.50x the fp32 NCHW clips/s.",
                                    "paper: bf16 + channels_last vs the reference videowalk step: 5.00x (target >= 2x: met)."]
    ev = [("eval", ["| stage | seconds | frames/s |", "|-|-|-|", "| features | 20.0 | 1 |", "| propagation | 30.5 | 1 |",
                    "| J&F from the PNGs | 10.0 | 1 |", "| total | 70.0 | 1 |"])]
    assert verdicts("eval", ev)[0].startswith("features + propagation + metrics: 60.5 s (target < 60 s: NOT met)")


def test_report_says_why_a_step_did_not_run(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "logs").mkdir(parents=True)
    out.mkdir()
    (work / "steps.tsv").write_text("crw\tfailed\t1\t3\t90\t\neval\tskipped\t-\t0\t0\tno DAVIS data\n")
    (work / "logs" / "crw.log").write_text("Traceback...\nRuntimeError: CUDA out of memory\n")
    text = assemble(str(work), str(out))
    assert "| crw | failed | 3 | 90 |  |" in text and "RuntimeError: CUDA out of memory" in text
    assert "Step `eval`: **skipped** (no DAVIS data)" in text
    assert "## Decoding" in text and "Not run (no such step in this run)." in text
    assert (out / "gpu_logs.txt").read_text().startswith("===== crw")


@pytest.mark.slow
def test_dry_run_writes_every_section(tmp_path):
    out = tmp_path / "out"
    r = run("--dry-run", "--out", str(out), "--data", str(tmp_path / "no_staged_data"), "--python", sys.executable)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = (out / "gpu_report.md").read_text()
    for _, title, _ in SECTIONS:
        assert f"## {title}" in report
    assert "## Machine" in report and "## Steps" in report and "dry run" in report
    steps = [line for line in report.splitlines() if line.startswith("| ") and "|" in line[2:]]
    for name in ("install", "crw", "propagation", "eval", "decode", "trainer_crw", "learning"):
        row = next((s for s in steps if s.startswith(f"| {name} |")), None)
        assert row is not None and "| ok |" in row, (name, row, (out / "gpu_logs.txt").read_text()[-3000:])
    # each benchmark's own table made it into its section
    for table in ("### CRW training step", "### Label propagation", "### eval_davis on", "### Decode throughput",
                  "### Trainer overhead and data supply", "### Learning run"):
        assert table in report
    assert "| trained, crw_demo.yaml |" in report
    assert (out / "machine.txt").stat().st_size > 0 and (out / "gpu_logs.txt").stat().st_size > 0

"""The manifest of `vidssl extract`: one part per shard while shards run, one merged manifest.jsonl after.

Each shard (an array job, a torchrun rank, or the one process of a plain run) appends one JSON line per video
it finishes or fails to OUT/manifest_<I>of<N>.jsonl; no two processes write the same file. `merge(OUT)` reads
every part and the previous manifest.jsonl, keeps each video's latest record (by its "finished" time), writes
manifest.jsonl (one line per video, sorted by source; status "ok" with its array, or "failed" with the error)
and failures.tsv (the failed ones, once each), then removes the parts it merged. It is safe to run while shards
still write, and twice at once: parts are read before manifest.jsonl, and a part is removed only after the
manifest that holds its records is in place and only when it did not grow meanwhile.
"""
from __future__ import annotations

import glob
import json
import os
import re

from vidssl.io.atomic import atomic_write

MANIFEST = "manifest.jsonl"
FAILURES = "failures.tsv"
TIMING_FIELDS = ("finished", "seconds")  # differ between runs that produce the same arrays
_PART = re.compile(r"manifest_(\d+)of(\d+)\.jsonl$")


def part_name(shard: int, num_shards: int) -> str:
    return f"manifest_{shard}of{num_shards}.jsonl"


def part_paths(out: str) -> list[str]:
    return sorted(p for p in glob.glob(os.path.join(glob.escape(out), "manifest_*of*.jsonl"))
                  if _PART.search(os.path.basename(p)))


def read_records(path: str, repair: bool = False) -> list[dict]:
    """The records of one manifest file, in order. A line cut by a killed writer (invalid JSON) is skipped;
    with `repair` (only for a file no one else is writing) the file is rewritten without it, so that the next
    appended record does not join a broken line."""
    try:
        with open(path) as f:
            lines = [line for line in f if line.strip()]
    except FileNotFoundError:  # a part merged (and removed) by another process meanwhile
        return []
    records, broken = [], 0
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            broken += 1
    if broken and repair:
        print(f"{path}: dropped {broken} incomplete line(s) (an interrupted run); those videos are redone")
        atomic_write(path, lambda tmp: _write_lines(tmp, records))
    return [r for r in records if isinstance(r, dict) and "source" in r]


def read_manifest(path: str) -> dict[str, dict]:
    """{source: its latest record} of one manifest file (repaired if cut)."""
    return {r["source"]: r for r in read_records(path, repair=True)}


def latest_records(out: str) -> tuple[dict[str, dict], list[tuple[str, int]]]:
    """({source: its latest record} over the parts and manifest.jsonl of `out`, [(part, bytes read)]).
    Parts are read first: a concurrent merge writes manifest.jsonl before it removes a part, so each record
    is seen in one place or the other."""
    records, parts = [], []
    for path in part_paths(out):
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            continue
        records += read_records(path)
        parts.append((path, size))
    records += read_records(os.path.join(out, MANIFEST))
    latest: dict[str, dict] = {}
    for r in records:  # the latest by finish time; records of older versions (no time) in file order
        old = latest.get(r["source"])
        if old is None or r.get("finished", 0) >= old.get("finished", 0):
            latest[r["source"]] = r
    return latest, parts


def _write_lines(path: str, records: list[dict]) -> None:
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def merge(out: str) -> dict:
    """Merge the parts of `out` into manifest.jsonl and failures.tsv (module docstring); returns counts."""
    if not os.path.isdir(out):
        raise FileNotFoundError(f"--merge {out!r}: no such folder")
    latest, parts = latest_records(out)
    if not latest:
        raise FileNotFoundError(f"--merge {out!r}: no {MANIFEST} or manifest_<I>of<N>.jsonl parts to merge")
    records = [latest[s] for s in sorted(latest)]
    failed = [r for r in records if r.get("status") == "failed"]
    atomic_write(os.path.join(out, MANIFEST), lambda tmp: _write_lines(tmp, records))
    failures = os.path.join(out, FAILURES)
    if failed:
        atomic_write(failures, lambda tmp: _write_text(tmp, "".join(f"{r['source']}\t{r.get('error', '')}\n"
                                                                  for r in failed)))
    elif os.path.exists(failures):
        os.remove(failures)  # an earlier list, no longer true
    for path, size in parts:
        try:
            if os.path.getsize(path) == size:  # a part that grew meanwhile stays for the next merge
                os.remove(path)
        except FileNotFoundError:
            pass
    return {"videos": len(records), "ok": len(records) - len(failed), "failed": len(failed),
            "parts": len(parts), "manifest": os.path.join(out, MANIFEST)}

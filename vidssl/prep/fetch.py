"""Download with a progress bar, resumable, then unpack; on failure say exactly what to fetch by hand."""
from __future__ import annotations

import os
import shutil
import tarfile
import urllib.request
import zipfile

from tqdm import tqdm


def download(url: str, dest: str) -> str:
    """Fetch `url` to `dest` (resuming a partial .part file); returns dest. Existing complete files are kept."""
    if os.path.exists(dest):
        return dest
    part = dest + ".part"
    done = os.path.getsize(part) if os.path.exists(part) else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    with urllib.request.urlopen(req, timeout=60) as r:
        if done and r.status != 206:  # server ignored the range: start over
            done = 0
        total = int(r.headers.get("Content-Length", 0)) + done
        with open(part, "ab" if done else "wb") as f, tqdm(total=total or None, initial=done, unit="B",
                                                            unit_scale=True, desc=os.path.basename(dest)) as bar:
            while chunk := r.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
    os.replace(part, dest)
    return dest


def unpack(archive: str, into: str) -> None:
    print(f"unpacking {archive} -> {into}")
    if archive.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            z.extractall(into)
    else:
        with tarfile.open(archive) as t:
            t.extractall(into, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(into)


def fetch_all(files: list[tuple[str, str]], root: str, manual_hint: str) -> bool:
    """Download and unpack [(url, archive name)] into root; False (with instructions) when offline."""
    os.makedirs(root, exist_ok=True)
    try:
        for url, name in files:
            unpack(download(url, os.path.join(root, name)), root)
    except OSError as e:
        print(f"download failed ({e}).\nFetch these by hand:\n" +
              "".join(f"  {url}\n" for url, _ in files) + manual_hint)
        return False
    return True


def move_contents(src: str, dst: str) -> None:
    os.makedirs(dst, exist_ok=True)
    for name in os.listdir(src):
        shutil.move(os.path.join(src, name), os.path.join(dst, name))
    os.rmdir(src)


def report(problems: list[str], name: str, root: str) -> int:
    """Print what verify() found; the exit status (0 = complete)."""
    for line in problems:
        print("problem:", line)
    print(f"{name} looks complete" if not problems else f"{len(problems)} problem(s) in {root}")
    return 1 if problems else 0

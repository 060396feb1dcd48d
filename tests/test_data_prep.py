import os

from vidssl.prep import davis2017, jhmdb
from vidssl.prep.fetch import fetch_all


def test_davis_verify_names_missing_pieces(tmp_path):
    problems = davis2017.verify(str(tmp_path))
    assert any("train.txt" in p for p in problems) and any("val.txt" in p for p in problems)
    sets = tmp_path / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    (sets / "val.txt").write_text("bear\n")
    (sets / "train.txt").write_text("")
    problems = davis2017.verify(str(tmp_path))
    assert "lists 1 sequences, expected 30" in " ".join(problems) and "bear: 0 frames, 0 masks" in problems


def test_jhmdb_verify_counts(shared_data):
    problems = jhmdb.verify(os.path.join(shared_data, "jhmdb"))
    assert problems[0] == "1 videos under Rename_Images, expected 928"


def test_failed_download_says_what_to_fetch(tmp_path, capsys):
    ok = fetch_all([("file:///nonexistent/archive.zip", "archive.zip")], str(tmp_path), "and unpack it here\n")
    out = capsys.readouterr().out
    assert not ok and "file:///nonexistent/archive.zip" in out and "unpack it here" in out

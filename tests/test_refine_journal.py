"""The resume journal (:mod:`fgpose.refine.journal`): its exact line format, a round trip,
resuming after a torn last line, replacement by key, compaction and the settings check."""

from __future__ import annotations

import json

import pytest

from fgpose.refine import journal
from fgpose.refine.search import SearchConfig

SETTINGS = {"schedule": "paper", "steps": [0.5, 1.0]}


def test_line_format_is_the_documented_one(tmp_path):
    j = journal.Journal(tmp_path / "j.jsonl", "test/1")
    j.start(SETTINGS)
    j.append([{"key": "a", "x": 1}])
    # Written out by hand: a header line, then one line per append (json.dumps separators).
    assert (tmp_path / "j.jsonl").read_text() == (
        '{"format": "test/1", "settings": {"schedule": "paper", "steps": [0.5, 1.0]}}\n'
        '{"results": [{"key": "a", "x": 1}]}\n')
    j.start({"other": True})  # an existing journal keeps its header
    assert (tmp_path / "j.jsonl").read_text().startswith('{"format": "test/1", "settings": {"schedule"')


def test_round_trip_and_resume_after_a_torn_line(tmp_path):
    path = tmp_path / "j.jsonl"
    j = journal.Journal(path, "test/1")
    assert j.load(SETTINGS) == {}  # no file yet
    j.start(SETTINGS)
    assert j.load(SETTINGS) == {}  # a header only
    first = [{"key": "a", "iou": 0.5, "pose": [1.0, 2.0]}, {"key": "b", "iou": 0.25, "pose": [3.0, 4.0]}]
    j.append(first)
    j.append([{"key": "c", "iou": 0.75, "pose": [5.0, 6.0]}])
    complete = path.read_bytes()
    # Killed in the middle of a write: a line without its newline.
    with open(path, "ab") as fh:
        fh.write(b'{"results": [{"key": "d", "io')
    resumed = journal.Journal(path, "test/1")  # another process
    done = resumed.load(SETTINGS)
    assert list(done) == ["a", "b", "c"]
    assert done["a"] == first[0] and done["b"] == first[1] and done["c"]["pose"] == [5.0, 6.0]
    assert path.read_bytes() == complete  # the torn line is cut from the file
    # Appending after the resume starts a fresh line: nothing glues to the torn bytes.
    resumed.start(SETTINGS)
    resumed.append([{"key": "d", "iou": 1.0, "pose": [7.0, 8.0]}])
    assert list(journal.Journal(path, "test/1").load(SETTINGS)) == ["a", "b", "c", "d"]
    assert len(path.read_text().splitlines()) == 4


def test_later_records_replace_earlier_ones_and_compaction(tmp_path):
    path = tmp_path / "j.jsonl"
    j = journal.Journal(path, "test/1", key="image")
    j.start(SETTINGS)
    j.append([{"image": "a", "pose": 1}, {"image": "b", "pose": 2}])
    j.append([{"image": "a", "pose": 3}])
    assert j.load(SETTINGS) == {"a": {"image": "a", "pose": 3}, "b": {"image": "b", "pose": 2}}
    assert j.compact(SETTINGS) == {"a": {"image": "a", "pose": 3}, "b": {"image": "b", "pose": 2}}
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == {"format": "test/1", "settings": SETTINGS}
    assert json.loads(lines[1]) == {"results": [{"image": "a", "pose": 3}, {"image": "b", "pose": 2}]}
    j.append([{"image": "c", "pose": 4}])  # the compacted journal goes on as before
    assert list(j.load(SETTINGS)) == ["a", "b", "c"]
    j.remove()
    assert not path.exists()
    j.remove()  # nothing to remove: no error


def test_refusals(tmp_path):
    path = tmp_path / "j.jsonl"
    j = journal.Journal(path, "test/1", what="test journal", discard_hint="delete it by hand to discard")
    j.start(SETTINGS)
    j.append([{"key": "a"}])
    with pytest.raises(ValueError, match=r"other settings \(schedule: 'paper' -> 'parallel'\).*"
                                         r"delete it by hand to discard it"):
        j.load({**SETTINGS, "schedule": "parallel"})
    with pytest.raises(ValueError, match=r"not a test journal \(test/2\)"):
        journal.Journal(path, "test/2", what="test journal").load(SETTINGS)
    path.write_text('{"format": "test/1", "settings": {}}\n{"results": [{"no key": 1}]}\n{"results": []}\n')
    with pytest.raises(ValueError, match=r"j\.jsonl:2: corrupt progress line"):
        j.load({})
    path.write_text("not json\n")
    with pytest.raises(ValueError, match="unreadable header"):
        j.load({})


def test_refine_journal_and_settings(tmp_path):
    out = tmp_path / "run" / "train_refined.pkl"
    assert journal.partial_path(out) == tmp_path / "run" / "train_refined.pkl.partial.jsonl"
    j = journal.refine_journal(out)
    assert j.path == journal.partial_path(out) and j.format == journal.PARTIAL_FORMAT
    anno = tmp_path / "a.pkl"
    config = SearchConfig(coarse=2)
    settings = journal.refine_settings(anno, config, 3000, 1500, True)
    assert settings == {"annotations": str(anno.resolve()), "schedule": "paper", "steps": list(config.steps),
                        "alpha0": 1.0, "alpha_min": 0.125, "max_sweeps": config.max_sweeps, "coarse": 2,
                        "coarse_alpha": config.coarse_alpha, "max_faces": 3000, "coarse_max_faces": 1500,
                        "drop_hidden_faces": True, "objective": "iou", "min_reference_iou": 0.0, "prior_scale": None}
    assert json.loads(json.dumps(settings)) == settings  # survives the header's JSON round trip
    # The objective is part of the settings: its spelling and the prior's scales.
    robust = journal.refine_settings(anno, SearchConfig(objective="band:2+map", min_reference_iou=0.5), None, None,
                                     True)
    assert robust["objective"] == "band:2+map:0.002" and robust["min_reference_iou"] == 0.5
    assert robust["prior_scale"] == list(SearchConfig(objective="map").objective.prior_scale)
    assert json.loads(json.dumps(robust)) == robust
    out.parent.mkdir()
    j.start(settings)
    with pytest.raises(ValueError, match="pass --restart to discard it"):
        j.load({**settings, "max_faces": None})

"""What an expander did to the seeds: the training log's statistics (no ground truth) and
`evaluate --relative-to` (against ground truth)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dgcn_cli.app import app
from stages import train
from stages.core.eval.changes import GROUPS, LabelChanges
from stages.core.io.checkpoint import load_checkpoint
from stages.core.maps import IGNORE
from stages.core.train.losses import supervision_stats

I = IGNORE


def test_changes_known_answer():
    gt = np.array([[0, 0, 1, 1, 1, I]], np.uint8)
    ref = np.array([[0, I, 0, 1, I, 1]], np.uint8)
    new = np.array([[0, 1, 1, I, 1, 0]], np.uint8)
    ch = LabelChanges(2)
    ch.update(gt, ref, new)
    r = ch.results(["background", "horse"])
    g = r["groups"]
    # the last pixel has no ground truth: counted nowhere
    assert r["pixels"] == 5 and r["reference_labelled"] == 3
    assert g["kept"] == {"pixels": 1, "new_right": 1, "reference_right": 1}
    assert g["added"] == {"pixels": 2, "new_right": 1, "reference_right": 0}
    assert g["relabelled"] == {"pixels": 1, "new_right": 1, "reference_right": 0}
    assert g["removed"] == {"pixels": 1, "new_right": 0, "reference_right": 1}
    assert g["left"]["pixels"] == 0
    assert r["added_precision"] == 0.5 and r["added_fraction_of_unlabelled"] == 1.0
    # no wrong horse seed (the last one has no ground truth): no addition is nearer one
    assert r["added_by_class"] == {"horse": {"pixels": 2, "precision": 0.5, "wrong_near_wrong_reference": 0.0,
                                             "right_near_wrong_reference": 0.0}}
    assert r["reference_wrong"] == 1 and r["wrong_corrected"] == 1.0 and r["wrong_kept"] == 0.0


def test_wrong_additions_next_to_wrong_seeds_known_answer():
    # horse seeds: a right one at 0, a wrong one at 6 (ground truth background); the new map adds
    # horse at 1 (right, next to the right seed), 5 and 7 (wrong, next to the wrong seed)
    gt = np.array([[1, 1, 1, 1, 0, 0, 0, 0]], np.uint8)
    ref = np.array([[1, I, I, I, I, I, 1, I]], np.uint8)
    new = np.array([[1, 1, I, I, I, 1, 1, 1]], np.uint8)
    ch = LabelChanges(2)
    ch.update(gt, ref, new)
    horse = ch.results(["background", "horse"])["added_by_class"]["horse"]
    assert horse["pixels"] == 3 and horse["precision"] == pytest.approx(1 / 3)
    assert horse["wrong_near_wrong_reference"] == 1.0 and horse["right_near_wrong_reference"] == 0.0


cells = st.sampled_from([0, 1, I])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(cells, cells, cells), min_size=4, max_size=4), min_size=1, max_size=5))
def test_nearer_a_wrong_seed_agrees_with_brute_force_distances(grid):
    gt, ref, new = (np.array([[c[i] for c in row] for row in grid], np.uint8) for i in range(3))
    ch = LabelChanges(2)
    ch.update(gt, ref, new)
    pts = np.argwhere(np.ones(gt.shape, bool))
    for c in (0, 1):
        def nearest(mask, y, x):
            ys, xs = np.nonzero(mask)
            return np.sqrt((ys - y) ** 2 + (xs - x) ** 2).min() if len(ys) else np.inf
        wrong_ref = (ref == c) & (gt != I) & (gt != c)
        right_ref = (ref == c) & (gt == c)
        expect = [0, 0]
        for y, x in pts:
            if gt[y, x] == I or ref[y, x] != I or new[y, x] != c or not wrong_ref.any():
                continue
            if nearest(wrong_ref, y, x) < nearest(right_ref, y, x):
                expect[0 if gt[y, x] != c else 1] += 1
        assert list(ch.near_wrong[c]) == expect


labels = st.sampled_from([0, 1, 2, I])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(labels, labels, labels), min_size=1, max_size=40))
def test_changes_partition_every_scored_pixel(rows):
    gt, ref, new = (np.array([[r[i] for r in rows]], np.uint8) for i in range(3))
    ch = LabelChanges(3)
    ch.update(gt, ref, new)
    r = ch.results(["a", "b", "c"])
    valid = gt != I
    assert sum(r["groups"][g]["pixels"] for g in GROUPS) == int(valid.sum())
    assert sum(r["groups"][g]["new_right"] for g in GROUPS) == int((valid & (new == gt)).sum())
    assert sum(r["groups"][g]["reference_right"] for g in GROUPS) == int((valid & (ref == gt)).sum())
    assert sum(c["pixels"] for c in r["added_by_class"].values()) == r["groups"]["added"]["pixels"]
    assert ch.wrong_corrected + ch.wrong_kept <= ch.ref_wrong


def test_supervision_stats_known_answer():
    # one image, two classes, p = 0.5 everywhere; one background seed, and the supervision
    # adds three background pixels: the per-image mean gives each of the four a quarter
    logits = torch.zeros(1, 2, 2, 2)
    seeds = torch.full((1, 2, 2), I, dtype=torch.long)
    seeds[0, 0, 0] = 0
    assert supervision_stats(logits, seeds, seeds) == {"added": 0.0, "seeds_changed": 0.0, "seed_grad_share": 1.0}
    grown = torch.zeros(1, 2, 2, dtype=torch.long)
    stats = supervision_stats(logits, grown, seeds)
    assert stats["added"] == 1.0 and stats["seeds_changed"] == 0.0
    assert stats["seed_grad_share"] == pytest.approx(0.25)
    flipped = grown.clone()
    flipped[0, 0, 0] = 1  # the seed overridden by the other class
    assert supervision_stats(logits, flipped, seeds)["seeds_changed"] == 1.0


def test_training_logs_what_the_expander_did_and_keeps_each_epoch(tmp_path, make_train_config):
    out = tmp_path / "run"
    final = train.run(make_train_config(out, expander="labelprop", optim={"epochs": 2})).path
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "added" in line]
    assert records and all(0 <= r["added"] <= 1 and 0 <= r["seed_grad_share"] <= 1 for r in records)
    assert max(r["added"] for r in records) > 0 and min(r["seed_grad_share"] for r in records) < 1
    assert final.exists() and not list(out.glob("epoch_*.pt"))  # off by default


def test_keep_epochs_writes_each_epochs_weights(tmp_path, make_train_config):
    from dataclasses import replace

    cfg = make_train_config(tmp_path / "run")
    cfg = replace(cfg, run=replace(cfg.run, keep_epochs=True))
    final = train.run(cfg).path
    e1, e2 = load_checkpoint(final.parent / "epoch_1.pt"), load_checkpoint(final.parent / "epoch_2.pt")
    assert (e1["epoch"], e2["epoch"]) == (1, 2)
    assert all(torch.equal(e2["model"][k], v) for k, v in load_checkpoint(final)["model"].items())
    assert not all(torch.equal(e1["model"][k], v) for k, v in e2["model"].items())
    # keeping the epochs changes how the run is kept, not what it trains: the same fingerprint
    train.run(make_train_config(tmp_path / "plain"))
    fingerprint = [json.loads((tmp_path / d / "config.json").read_text())["fingerprint"] for d in ("run", "plain")]
    assert fingerprint[0] == fingerprint[1]


def test_evaluate_relative_to_the_seeds(tmp_path, train_demo_root, train_seeds, trained_checkpoint):
    labels = tmp_path / "labels.h5"
    res = CliRunner().invoke(app, ["graphcut-label", "--dataset", "demo", "--data-root", str(train_demo_root), "--split", "train",
                                   "--checkpoint", str(trained_checkpoint), "--seeds", str(train_seeds), "--out", str(labels),
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    js = tmp_path / "e.json"
    res = CliRunner().invoke(app, ["evaluate", str(labels), "--dataset", "demo", "--data-root", str(train_demo_root),
                                   "--split", "train", "--relative-to", str(train_seeds), "--json", str(js)])
    assert res.exit_code == 0, res.output
    assert "changes relative to" in res.output and "added" in res.output
    r = json.loads(js.read_text())
    ch = r["changes"]
    assert ch["groups"]["added"]["pixels"] > 0
    assert r["protocol"]["relative_to"]["kind"] == "seeds"
    # the labels' own precision over all labelled pixels is what the groups add up to
    g = ch["groups"]
    labelled = sum(g[k]["pixels"] for k in ("added", "kept", "relabelled"))
    right = sum(g[k]["new_right"] for k in ("added", "kept", "relabelled"))
    assert right / labelled == pytest.approx(r["precision"], abs=1e-6)
    res = CliRunner().invoke(app, ["evaluate", str(labels), "--dataset", "demo", "--data-root", str(train_demo_root),
                                   "--split", "val", "--relative-to", str(train_seeds)])
    assert res.exit_code != 0 and "\n" not in res.output.strip().splitlines()[-1]

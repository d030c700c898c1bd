"""Progress where stderr is not a terminal (a batch job, ``| cat``, ``> log``): plain lines at
the first update, every ``DGCN_PROGRESS_INTERVAL`` seconds and at the end, each with the count,
percent, rate, time left and the stage's info."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgcn_cli.app import app
from dgcn_cli.common import PlainProgress, progress_interval
from stages.core.errors import DgcnError
from stages.core.provenance import cpu_name
from stages.core.units import duration, rate_text

runner = CliRunner()

# "train: 120/2000 (6%) 1.9/s, 16m28s left, epoch 1/7, loss 0.412, lr 5.0e-04"
LINE = re.compile(r"^(?P<stage>[\w-]+): (?P<done>\d+)/(?P<total>\d+) \((?P<pct>\d+)%\)(?P<rest>.*)$")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counts(text: str, stage: str) -> list[tuple[int, int, str]]:
    """(done, total, rest of the line) of every count line of ``stage``."""
    found = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m and m["stage"] == stage:
            found.append((int(m["done"]), int(m["total"]), m["rest"]))
    return found


def test_lines_at_the_first_update_every_interval_and_at_the_end() -> None:
    out, clock = io.StringIO(), Clock()
    p = PlainProgress("train", out, interval=30, clock=clock)
    for done in range(1, 201):  # 2 s per iteration: a line every 15 iterations
        clock.now += 2
        p.update(done, 200, info=f"loss {1 / done:.3f}")
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "train: 1/200 (0%), loss 1.000"  # the first count at once, no rate yet
    got = counts(out.getvalue(), "train")
    assert [d for d, _, _ in got] == sorted(d for d, _, _ in got)
    assert len(got) == 1 + 200 * 2 // 30 + 1  # first, one per 30 s, last
    assert got[-1][0] == got[-1][1] == 200 and "took 6m38s" in got[-1][2]
    assert "0.5/s" not in lines[1] and "2.0s each, " in lines[1]  # slow work reads as seconds each
    mid = next(rest for d, _, rest in got if d == 31)
    assert "2.0s each, 5m38s left, loss 0.032" in mid  # 169 left at 2 s each


def test_zero_interval_prints_every_update_and_no_duplicate_last_line() -> None:
    out, clock = io.StringIO(), Clock()
    p = PlainProgress("evaluate", out, interval=0, clock=clock)
    for done in range(1, 6):
        clock.now += 0.25
        p.update(done, 5)
    p.close()
    got = counts(out.getvalue(), "evaluate")
    assert [d for d, _, _ in got] == [1, 2, 3, 4, 5]
    assert "4.0/s" in got[-1][2] and "took 1s" in got[-1][2]


def test_a_second_loop_starts_a_new_count_after_the_first_ones_last_line() -> None:
    out, clock = io.StringIO(), Clock()
    p = PlainProgress("cam", out, interval=1000, clock=clock)
    for done in range(1, 11):  # training iterations
        clock.now += 1
        p.update(done, 10)
    for done in range(1, 4):  # then the CAMs of 3 images
        clock.now += 1
        p.update(done, 3)
    p.close()
    assert [(d, t) for d, t, _ in counts(out.getvalue(), "cam")] == [(1, 10), (10, 10), (1, 3), (3, 3)]


def test_a_failed_run_says_where_it_stopped() -> None:
    out, clock = io.StringIO(), Clock()
    p = PlainProgress("train", out, interval=1000, clock=clock)
    p.update(1, 100)
    clock.now += 65
    p.update(14, 100)
    p.close(failed=True)
    assert out.getvalue().splitlines()[-1] == "train: 14/100 (14%) 5.0s each, stopped after 1m05s"


def test_interval_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("DGCN_PROGRESS_INTERVAL", raising=False)
    assert progress_interval() == 30
    monkeypatch.setenv("DGCN_PROGRESS_INTERVAL", "2.5")
    assert progress_interval() == 2.5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("DGCN_PROGRESS_INTERVAL", bad)
        with pytest.raises(DgcnError, match="DGCN_PROGRESS_INTERVAL must be a number of seconds"):
            progress_interval()


def test_units_for_people() -> None:
    assert [duration(s) for s in (0.4, 45, 988, 7500)] == ["0s", "45s", "16m28s", "2h05m"]
    assert [rate_text(r) for r in (1.94, 0.25, 0)] == ["1.9/s", "4.0s each", "stalled"]


def test_cli_without_a_terminal_prints_progress_lines(demo_root: Path, cache_dir: Path) -> None:
    # CliRunner's stderr is not a terminal: the plain lines, with every update at interval 0
    r = runner.invoke(app, ["evaluate", str(demo_root / "SegmentationClass"), "--dataset", "demo",
                            "--data-root", str(demo_root), "--split", "val"],
                      env={"DGCN_CACHE": str(cache_dir), "DGCN_PROGRESS_INTERVAL": "0"})
    assert r.exit_code == 0, r.output
    got = counts(r.stderr, "evaluate")
    assert [d for d, _, _ in got] == list(range(1, 7))  # 6 val images, monotone
    assert got[-1][0] == got[-1][1] == 6


def test_cli_training_prints_loss_and_time_left(tmp_path: Path, train_data, train_seeds, cache_dir: Path) -> None:
    r = runner.invoke(app, [
        "train", "--out", str(tmp_path / "run"), "--seeds", str(train_seeds), "--dataset", "demo",
        "--data-root", str(train_data.data_root), "--backbone", "tiny", "--weights", "none", "--head", "aspp",
        "--epochs", "2", "--batch-size", "4", "--crop", "64", "--lr", "0.01", "--warmup", "2",
        "--boundary-loss", "none", "--device", "cpu",
    ], env={"DGCN_CACHE": str(cache_dir), "DGCN_PROGRESS_INTERVAL": "0"})
    assert r.exit_code == 0, r.output
    got = counts(r.stderr, "train")
    assert [d for d, _, _ in got] == list(range(1, 9)) and {t for _, t, _ in got} == {8}
    assert re.search(r"(/s| each), (\d+h)?(\d+m)?\d+s left, epoch 1/2, loss \d\.\d{3}, lr \d\.\de-\d\d$", got[1][2]), got[1][2]
    assert "took" in got[-1][2] and "epoch 2/2" in got[-1][2]
    assert f"trained in fp32 on {cpu_name()} (log: {tmp_path / 'run' / 'train.log'})" in r.stdout


def test_a_bad_interval_is_one_line(demo_root: Path, cache_dir: Path) -> None:
    r = runner.invoke(app, ["evaluate", str(demo_root / "SegmentationClass"), "--dataset", "demo",
                            "--data-root", str(demo_root), "--split", "val"],
                      env={"DGCN_CACHE": str(cache_dir), "DGCN_PROGRESS_INTERVAL": "often"})
    assert r.exit_code == 2 and "DGCN_PROGRESS_INTERVAL" in r.output and "Traceback" not in r.output

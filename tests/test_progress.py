"""Progress off a terminal (rdbench.progress): timestamped lines at a steady interval with the step,
the rate and the ETA, and a grid's total ETA; all with a fake clock and a captured stream, no sleeps."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from rdbench.cli import main
from rdbench.commands.output import Announcer
from rdbench.progress import LogProgress, TerminalBar, duration, eta_s, progress


class FakeClock:
    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


WALL = 1_796_400_000.0  # 2026-12-04T16:00:00Z


def test_a_line_every_interval_with_step_rate_and_eta():
    clock, stream = FakeClock(), io.StringIO()
    shown = LogProgress(800, "ddpm/digits training", stream, interval=30, clock=clock, wall=lambda: WALL)
    for _ in range(232):  # 29 s at 8 steps/s: nothing yet
        clock.now += 0.125
        shown.update()
    assert stream.getvalue() == ""
    for _ in range(16):  # crosses 30 s once
        clock.now += 0.125
        shown.update()
    (line,) = stream.getvalue().splitlines()
    assert line == "2026-12-04T16:00:00Z ddpm/digits training: step 240/800 (30%), 8 steps/s, ETA 1 min 10 s"
    for _ in range(552):
        clock.now += 0.125
        shown.update()
    shown.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4  # at 30, 60 and 90 s, then the last line
    assert lines[1].endswith("step 480/800 (60%), 8 steps/s, ETA 40 s")
    assert lines[-1].endswith("step 800/800 (100%), 8 steps/s, done in 1 min 40 s")


def test_a_task_shorter_than_the_interval_stays_silent():
    clock, stream = FakeClock(), io.StringIO()
    shown = LogProgress(10, "gray-scott x2", stream, interval=30, clock=clock)
    for _ in range(10):
        clock.now += 1
        shown.update()
    shown.close()
    assert stream.getvalue() == ""


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("RDBENCH_PROGRESS_S", "5")
    assert LogProgress(1, stream=io.StringIO()).interval == 5
    monkeypatch.setenv("RDBENCH_PROGRESS_S", "soon")
    with pytest.raises(ValueError, match="RDBENCH_PROGRESS_S='soon' is not a number of seconds"):
        LogProgress(1, stream=io.StringIO())


def test_a_bad_interval_is_one_line_before_any_run(monkeypatch, experiment, mlflow_client):
    monkeypatch.setenv("RDBENCH_PROGRESS_S", "0")
    result = CliRunner().invoke(main, ["run", "rd", "--profile", "smoke", "--experiment", experiment])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "RDBENCH_PROGRESS_S='0': the interval must be a positive number of seconds" in line
    assert mlflow_client.get_experiment_by_name(experiment) is None


def test_off_a_terminal_progress_writes_lines_and_on_one_a_bar():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    with progress(5, "x", io.StringIO()) as shown:
        assert isinstance(shown, LogProgress)
    tty = Tty()
    with progress(4, "rd", tty) as bar:
        assert isinstance(bar, TerminalBar)
        for _ in range(4):
            bar.update()
    assert tty.getvalue().startswith("\rrd [") and "4/4" in tty.getvalue() and tty.getvalue().endswith("\n")


def test_durations_and_eta():
    assert [duration(s) for s in (4.4, 61, 3725, float("nan"))] == ["4 s", "1 min 01 s", "1 h 02 min", "unknown"]
    assert eta_s(10, 2, 5) == 15 and eta_s(0, 0, 5) != eta_s(0, 0, 5)  # nan before anything is done


def test_the_grid_prints_its_total_eta_from_the_cells_it_ran():
    clock, lines = FakeClock(), []
    announce = Announcer(5, echo=lines.append, clock=clock)

    def cell(status: str) -> SimpleNamespace:
        return SimpleNamespace(status=status, error=None, metrics={"R": 1.0}, run_id="r",
                               cell=SimpleNamespace(run_name="rd/spot/seed=0"))

    announce(cell("SKIPPED"))  # a reused cell costs nothing and says nothing of the rate
    assert lines[-1].endswith("ETA unknown for 4 cell(s)")
    clock.now += 20
    announce(cell("FINISHED"))
    clock.now += 40
    announce(cell("FINISHED"))  # 2 cells run in 60 s: 30 s each, 2 left
    assert lines[-1] == "    so far: 2 finished, 1 skipped, 0 failed; 60 s; ETA 1 min 00 s for 2 cell(s)"
    clock.now += 30
    announce(cell("FAILED"))
    clock.now += 30
    announce(cell("FINISHED"))
    assert lines[-1].endswith("; 120 s; done")


def test_a_run_redirected_to_a_log_prints_timestamped_progress(monkeypatch, experiment):
    monkeypatch.setenv("RDBENCH_PROGRESS_S", "0.000001")  # every update, so that a short run shows some
    result = CliRunner().invoke(main, ["run", "rd", "--profile", "smoke", "--experiment", experiment,
                                       "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "gray-scott x" in line and ": step " in line]
    assert len(lines) >= 2 and lines[-1].endswith("done in " + lines[-1].rsplit("done in ", 1)[-1])
    stamp, _, rest = lines[0].partition(" ")
    assert len(stamp) == 20 and stamp.endswith("Z") and "steps/s, ETA" in rest

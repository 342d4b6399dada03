"""metarl-curves: training curves from a run's TensorBoard scalars, resumed runs included."""

from __future__ import annotations

from torch.utils.tensorboard import SummaryWriter

from metarl.logger import read_scalars
from metarl.scripts.curves import main


def _session(run_dir, steps, offset):
    """One session of a run: a writer logging ``returns/after_adaptation = step + offset``."""
    writer = SummaryWriter(str(run_dir))
    for step in steps:
        writer.add_scalar("returns/after_adaptation", step + offset, step)
        writer.add_scalar("loss/outer", -step, step)
    writer.close()


def test_a_resumed_run_reads_as_one_curve_as_tensorboard_shows_it(tmp_path):
    # The first session logged 1..5 and was interrupted after checkpointing at 3; the resumed
    # session logged 4..7 again, so 4 and 5 must read as the second session's values.
    _session(tmp_path, range(1, 6), offset=0.0)
    _session(tmp_path, range(4, 8), offset=100.0)
    steps, values = read_scalars(tmp_path, "returns/after_adaptation")
    assert steps == [1, 2, 3, 4, 5, 6, 7]
    assert values == [1.0, 2.0, 3.0, 104.0, 105.0, 106.0, 107.0]
    # A third session logging every second iteration from 6 drops 7 too, as TensorBoard does.
    _session(tmp_path, range(6, 12, 2), offset=1000.0)
    steps, values = read_scalars(tmp_path, "returns/after_adaptation")
    assert steps == [1, 2, 3, 4, 5, 6, 8, 10]
    assert values == [1.0, 2.0, 3.0, 104.0, 105.0, 1006.0, 1008.0, 1010.0]


def test_metarl_curves_draws_one_png_of_several_runs(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _session(a, range(1, 21), offset=0.0)
    _session(b, range(1, 11), offset=-5.0)
    out = tmp_path / "figs" / "curves.png"
    main([str(a), str(b), "--labels", "exact", "subsampled", "--smooth", "5", "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "exact: iterations 1-20 (20 points), last 20" in printed
    assert "subsampled: iterations 1-10 (10 points), last 5" in printed


def test_metarl_curves_bad_input_is_one_clear_line(tmp_path, one_clear_line):
    _session(tmp_path / "run", range(1, 4), offset=0.0)
    (tmp_path / "empty").mkdir()
    run = str(tmp_path / "run")
    one_clear_line(main, [run, "--tag", "returns/nope"],
                   "logged no scalar 'returns/nope'; it has: loss/outer, returns/after_adaptation")
    one_clear_line(main, [run, "--labels", "a", "b"], "--labels gives 2 labels for 1 runs")
    one_clear_line(main, [str(tmp_path / "missing")], "does not exist")
    one_clear_line(main, [str(tmp_path / "empty")], "has no TensorBoard event files")
    one_clear_line(main, [run, "--smooth", "0"], "--smooth must be at least 1")
    one_clear_line(main, [], "give at least one run directory")

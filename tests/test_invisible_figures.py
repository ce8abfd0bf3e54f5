"""The backdoor figures' image tiling: any count of images, rows of equal width."""
import numpy as np
import pytest

from diffsec.backdoor.figures import tile_rows


@pytest.mark.parametrize("n", [1, 8, 12, 16])
def test_tile_rows_places_every_image_and_pads_with_white(n):
    imgs = np.stack([np.full((4, 5, 3), i, np.uint8) for i in range(n)])
    grid = tile_rows(imgs, 8)
    rows = -(-n // 8)
    assert grid.shape == (4 * rows, 5 * 8, 3)
    for k in range(rows * 8):
        r, c = divmod(k, 8)
        tile = grid[4 * r:4 * r + 4, 5 * c:5 * c + 5]
        np.testing.assert_array_equal(tile, imgs[k] if k < n else np.full((4, 5, 3), 255, np.uint8))


def _ablation_table(path):
    """A small invisible_ablation CSV, rows written out of order, one cell not run."""
    from diffsec.tables import Cell, write_table

    cells = []
    for lam, asr, se in ((0.5, 0.115, 0.0226), (0.1, 0.005, 0.005), (0.9, 0.0, 0.0)):
        for column, shift in (("DDIM", 0.0), ("DDIM, ordinary sampler", 0.01)):
            cells.append(Cell("invisible_lambda", f"lambda {lam:g}", column, "asr", "", asr + shift, se=se))
            cells.append(Cell("invisible_lambda", f"lambda {lam:g}", column, "a_prec", "", 0.7 - lam / 2))
    cells.append(Cell("invisible_lambda", "lambda 0.7", "DDPM", "asr", "", "", note="not run"))
    for share, fid in ((100, 12.0), (20, 13.5)):
        for metric, v, se in (("fid", fid, 0.4), ("precision", 0.86, ""), ("recall", 0.2, ""),
                              ("a_prec", 0.7, ""), ("asr", share / 1000, 0.01)):
            cells.append(Cell("invisible_steps", f"{share}% of steps", "DDIM", metric, "resnet56-cifar10", v, se=se))
    write_table(cells, path)


def test_sweep_series_sorts_by_lambda_and_keeps_each_chain_apart(tmp_path):
    from diffsec.backdoor.figures import sweep_series
    from diffsec.paper.invisible import lambda_of, share_of
    from diffsec.tables import read_table

    _ablation_table(tmp_path / "t.csv")
    rows = read_table(tmp_path / "t.csv")
    lam = sweep_series(rows, "invisible_lambda", lambda_of)
    assert set(lam) == {"DDIM", "DDIM, ordinary sampler"}          # the not-run DDPM cell is left out
    assert lam["DDIM"]["asr"] == ([0.1, 0.5, 0.9], [0.005, 0.115, 0.0], [0.005, 0.0226, 0.0])
    x, y, se = lam["DDIM, ordinary sampler"]["asr"]
    assert x == [0.1, 0.5, 0.9] and y == pytest.approx([0.015, 0.125, 0.01])
    assert lam["DDIM"]["a_prec"][2] == [0.0, 0.0, 0.0]              # no se: drawn without bars
    steps = sweep_series(rows, "invisible_steps", share_of)
    assert steps["DDIM"]["fid"] == ([20.0, 100.0], [13.5, 12.0], [0.4, 0.4])


def test_ablation_figure_is_drawn_from_the_table_and_records_it(tmp_path, capsys):
    import json

    from diffsec.artifact import sha256_file
    from diffsec.cli.main import main

    _ablation_table(table := tmp_path / "t.csv")
    assert main(["figure-backdoor-ablation", "--table", str(table), "--out", str(out := tmp_path / "fig")]) == 0
    assert (out / "lambda.png").stat().st_size > 10_000 and (out / "steps.png").stat().st_size > 10_000
    assert json.loads((out / "manifest.json").read_text())["inputs"]["table"] == sha256_file(table)
    # a table without the sweep's rows (here: only its steps rows) is refused in one line, nothing written
    table.write_text("".join(line for line in table.read_text().splitlines(keepends=True)
                             if "invisible_lambda" not in line))
    assert main(["figure-backdoor-ablation", "--table", str(table), "--out", str(bad := tmp_path / "bad")]) == 2
    assert "no measured DDIM cells of invisible_lambda" in capsys.readouterr().err and not bad.exists()


@pytest.mark.parametrize("lam", [0.1, 0.3, 0.5, 0.25, 1e-3])
def test_lambda_row_reads_back(lam):
    from diffsec.paper.invisible import lambda_of, lambda_row

    assert lambda_of(lambda_row(lam)) == lam


@pytest.mark.parametrize("step, final, share", [(160, 800, 20), (400, 800, 50), (800, 800, 100), (1, 3, 33)])
def test_steps_row_reads_back_as_the_rounded_share(step, final, share):
    from diffsec.paper.invisible import share_of, steps_row

    assert share_of(steps_row(step, final)) == share

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

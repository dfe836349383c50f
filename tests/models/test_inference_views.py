"""The views of ``spec.scan_views`` merged inside the inference module."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xscan.models.inference import DetectorInference, unview_map, view_tensor
from xscan.models.peak_decode import PeakDecoder


class DarkBoxNet(nn.Module):
    """A stand-in network that knows where the dark pixels of its input are: a heatmap that
    peaks at their box's centre, and at every location the distances to that box's sides.
    Whatever view it is shown, its answer is exact in that view's frame, so the merged
    answer is the box itself only if every view is turned back correctly."""

    stride = 8
    num_classes = 1

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        dark = images.mean(1) < 0.5  # (B, H, W)
        _, h, w = dark.shape
        xs = torch.arange(w, dtype=torch.float32)
        ys = torch.arange(h, dtype=torch.float32)
        cols, rows = dark.any(1), dark.any(2)
        x0 = torch.where(cols, xs, torch.inf).amin(1)
        x1 = torch.where(cols, xs + 1, -torch.inf).amax(1)
        y0 = torch.where(rows, ys, torch.inf).amin(1)
        y1 = torch.where(rows, ys + 1, -torch.inf).amax(1)
        gx = (torch.arange(w // self.stride) + 0.5) * self.stride
        gy = (torch.arange(h // self.stride) + 0.5) * self.stride
        b = len(images)
        gx = gx.view(1, 1, -1).expand(b, h // self.stride, -1)
        gy = gy.view(1, -1, 1).expand(b, -1, w // self.stride)
        ltrb = torch.stack(
            [
                gx - x0.view(-1, 1, 1),
                gy - y0.view(-1, 1, 1),
                x1.view(-1, 1, 1) - gx,
                y1.view(-1, 1, 1) - gy,
            ],
            1,
        )
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        d2 = (gx - cx.view(-1, 1, 1)) ** 2 + (gy - cy.view(-1, 1, 1)) ** 2
        heat = (2.0 - d2 / 200.0).unsqueeze(1)  # logits, highest at the centre
        return {"heatmap": heat, "ltrb": ltrb}


@pytest.mark.parametrize("views,size", [(2, (64, 96)), (4, (64, 96)), (8, (96, 96))])
def test_merged_views_give_the_box_in_the_input_frame(views, size):
    h, w = size
    images = torch.ones(2, 3, h, w)
    images[0, :, 10:30, 20:61] = 0.0  # wide box, off centre
    images[1, :, 40:60, 8:25] = 0.0
    truth = torch.tensor([[20.0, 10, 61, 30], [8, 40, 25, 60]])
    decoder = PeakDecoder(8, 1, (h, w), max_detections=5, score_threshold=0.1)
    boxes, scores, _, num_dets, view_scores = DetectorInference(DarkBoxNet(), decoder, views)(
        images
    )
    assert view_scores.shape == (2, views)
    assert (num_dets >= 1).all()
    torch.testing.assert_close(boxes[:, 0], truth, atol=1e-4, rtol=0)
    # one view alone, turned back, gives the same box: the merge is no average of errors
    for k in range(views):
        out = DarkBoxNet()(view_tensor(images, k))
        ltrb = unview_map(out["ltrb"], k, ltrb=True)
        heat = unview_map(torch.sigmoid(out["heatmap"]), k)
        b_k = decoder.decode(heat, ltrb)[0][:, 0]
        torch.testing.assert_close(b_k, truth, atol=1e-4, rtol=0)


def test_view_tensor_and_unview_map_are_inverse():
    m = torch.arange(2 * 4 * 6 * 6, dtype=torch.float32).view(2, 4, 6, 6)
    for k in range(8):
        assert torch.equal(unview_map(view_tensor(m, k), k), m)

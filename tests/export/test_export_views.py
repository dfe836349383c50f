"""A detector exported with ``spec.scan_views`` > 1 runs its views inside the graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xscan.export.parity import prepared_batch, synthetic_scans
from xscan.models import build_inference_module, build_model
from xscan.preprocess import scan_scores_from_views
from xscan.train.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def views_export(tiny_checkpoint, tmp_path_factory):
    from xscan.export.onnx_export import export_checkpoint

    tmp = tmp_path_factory.mktemp("views")
    ckpt = load_checkpoint(tiny_checkpoint)
    spec = ckpt["spec"].replace(scan_views=4)
    path = save_checkpoint(tmp / "four.pt", model=ckpt["model"], spec=spec, config=ckpt["config"])
    return export_checkpoint(path, tmp / "four.onnx", parity_images=4), path


def test_views_export_with_view_scores_and_pass_parity(views_export):
    import onnx

    result, _ = views_export
    assert result.parity.ok, result.parity.summary()
    assert "view_scores" in result.parity.max_abs_error
    outs = [o.name for o in onnx.load(str(result.path)).graph.output]
    assert outs == ["boxes", "scores", "classes", "num_dets", "view_scores"]


def test_runtime_scan_score_is_the_mean_of_the_graphs_view_scores(views_export):
    from xscan.runtime import load_model

    result, ckpt_path = views_export
    ckpt = load_checkpoint(ckpt_path)
    spec = ckpt["spec"]
    model = build_model(spec)
    model.load_state_dict(ckpt["model"])
    module = build_inference_module(model.eval(), spec)
    images = synthetic_scans(spec, 4, seed=3)
    with torch.no_grad():
        outs = module(torch.from_numpy(prepared_batch(spec, images)))
    expected = scan_scores_from_views(outs[4].numpy(), spec.score_threshold)
    det = load_model(result.path, threads=1, tiling="never")
    assert det.graph_views == 4
    preds = det.predict_batch(images)
    got = np.array([p.image_score for p in preds])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert len({round(float(s), 4) for s in outs[4].flatten()}) > 4  # views differ
    for p, vs in zip(preds, outs[4].numpy(), strict=True):
        np.testing.assert_allclose(p.extra["view_scores"], vs, atol=1e-4)
        assert p.alarm == (p.image_score >= p.threshold)


def test_eval_refuses_other_view_counts_for_a_graph_with_views(
    views_export, labelled_folder, capsys
):
    from xscan.cli import main as cli

    result, _ = views_export
    argv = ["eval", str(result.path), str(labelled_folder), "--out", str(result.path.parent / "e")]
    assert cli([*argv, "--scan-views", "2"]) != 0
    assert "runs 4 views, so --scan-views 2 cannot apply" in capsys.readouterr().err
    assert cli([*argv, "--scan-views", "4"]) == 0

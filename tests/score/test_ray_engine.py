"""``--engine ray`` (Ray Data, local cluster) gives the same results as the local engine."""

from __future__ import annotations

from scan_folders import load_results, make_folder, run_cli


def test_ray_engine_matches_local(tmp_path, toy_detector_onnx):
    root = make_folder(tmp_path / "in", 20, seed=11)
    (root / "lane2" / "empty.png").write_bytes(b"")
    local, ray_run = tmp_path / "local", tmp_path / "ray"
    args = [str(toy_detector_onnx), str(root), "--batch-size", "4", "--no-progress"]
    run_cli("score", *args, "--out", str(local))
    env = {"RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_args = ["--engine", "ray", "--ray-actors", "2", "--overlays"]
    out = run_cli("score", *args, "--out", str(ray_run), *ray_args, env=env)
    assert "scored 20 / 21 inputs, 1 failed" in out.stdout
    assert load_results(ray_run) == load_results(local)
    assert len(list((ray_run / "overlays").glob("*.jpg"))) == 20
    assert (ray_run / "summary.csv").read_text() == (local / "summary.csv").read_text()

"""Reports: flat dotted metrics.json written atomically, report.md with image grids and plots, failures."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from gaussiantoken.eval.report import (ReportSection, flatten_metrics, save_image_grid, save_plot,
                                       write_json_atomic, write_report)


def test_flatten_metrics():
    flat = flatten_metrics({"reconstruction": {"psnr": torch.tensor(31.25), "skipped": {"ms_ssim": "too small"}},
                            "vqa": {"overall": np.float32(0.5), "n": np.int64(3), "bad": float("nan")}})
    assert flat == {"reconstruction.psnr": 31.25, "reconstruction.skipped.ms_ssim": "too small",
                    "vqa.overall": 0.5, "vqa.n": 3, "vqa.bad": "nan"}
    assert isinstance(flat["vqa.n"], int)
    with pytest.raises(ValueError, match="twice"):
        flatten_metrics({"a": {"b": 1}, "a.b": 2})
    with pytest.raises(TypeError, match="object"):
        flatten_metrics({"a": object()})


def test_image_grid_layout_and_captions(tmp_path):
    imgs = torch.zeros(5, 3, 32, 32)
    imgs[:, 0] = 1.0  # red in [0, 1]
    path = save_image_grid(imgs, tmp_path / "grid.png", nrow=3, pad=2)
    grid = Image.open(path)
    assert grid.size == (3 * (128 + 2) + 2, 2 * (128 + 2) + 2)  # 32 px upscaled x4 to 128
    assert grid.getpixel((2 + 64, 2 + 64)) == (255, 0, 0)
    assert grid.getpixel((2 + 2 * 130 + 64, 130 + 2 + 64)) == (255, 255, 255)  # the empty 6th slot
    capped = Image.open(save_image_grid(list(imgs[:2] * 2 - 1), tmp_path / "cap.png", nrow=2, value_range=(-1, 1),
                                        captions=["a small red circle to the left of a large blue square", "x"]))
    assert capped.size[1] > 128 + 4
    # Captions draw dark text under the tiles.
    under = np.asarray(capped)[2 + 128 + 1:, :130]
    assert (under < 128).any()
    with pytest.raises(ValueError, match="captions"):
        save_image_grid(imgs, tmp_path / "x.png", captions=["one"])


def test_write_report_complete(tmp_path):
    grid = save_image_grid(torch.rand(4, 3, 8, 8), tmp_path / "out" / "recon.png", nrow=2)
    plot = save_plot(tmp_path / "out" / "curve.png", [1, 2, 3], {"psnr": [20.0, 22.0, 23.5]}, "tokens", "dB")
    assert Image.open(plot).size == (500, 350)
    metrics = {"reconstruction": {"psnr": 31.2, "ssim": 0.91, "skipped": {"ms_ssim": "32x32 too small"}},
               "captioning": {"cider": 1.05}}
    record = write_report(tmp_path / "out", metrics, config={"seed": 0},
                          sections=[ReportSection("Reconstructions", "Top: originals.", [("recon.png", "val batch"),
                                                                                        plot])])
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved == record
    assert saved["status"] == "complete" and saved["reconstruction.psnr"] == 31.2
    assert saved["captioning.cider"] == 1.05 and saved["config.seed"] == 0
    assert saved["reconstruction.skipped.ms_ssim"] == "32x32 too small"
    md = (tmp_path / "out" / "report.md").read_text()
    assert "**Status: complete.**" in md and "| psnr | 31.2 |" in md
    assert "![val batch](recon.png)" in md and "(curve.png)" in md and "Top: originals." in md
    assert sorted(os.listdir(tmp_path / "out")) == ["curve.png", "metrics.json", "recon.png", "report.md"]
    with pytest.raises(FileNotFoundError, match="missing.png"):
        write_report(tmp_path / "out2", metrics, sections=[ReportSection("x", images=["missing.png"])])
    assert not (tmp_path / "out2" / "metrics.json").exists()


def test_failed_task_is_marked_not_reported(tmp_path):
    metrics = {"reconstruction": {"psnr": 30.0}, "vqa": {"overall": 0.12}}
    record = write_report(tmp_path, metrics, failed={"vqa": "RuntimeError: out of memory after 40 batches"})
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == record and saved["status"] == "incomplete"
    assert "vqa.overall" not in saved and saved["failed.vqa"].startswith("RuntimeError")
    md = (tmp_path / "report.md").read_text()
    assert "INCOMPLETE" in md and "`vqa`: RuntimeError: out of memory" in md and "0.12" not in md


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": 2, "b": float("nan")})  # strict JSON: fails mid-write
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]

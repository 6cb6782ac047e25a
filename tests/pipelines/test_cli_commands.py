"""`gaussiantoken generate | caption | ask` through the CLI dispatcher."""

from PIL import Image

from gaussiantoken.pipelines.cli import main
from gaussiantoken.pipelines.commands import image_grid


def test_image_grid_layout():
    tiles = [Image.new("RGB", (4, 3), (10 * i, 0, 0)) for i in range(5)]
    grid = image_grid(tiles)  # 3 columns x 2 rows
    assert grid.size == (12, 6)
    assert grid.getpixel((8, 0)) == (20, 0, 0) and grid.getpixel((4, 3)) == (40, 0, 0)
    assert grid.getpixel((8, 3)) == (0, 0, 0)


def test_generate_caption_ask(tiny_lm_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    rc = main(["generate", "a large red circle", "--model", str(tiny_lm_dir), "--out", str(out),
               "--num-images", "4", "--guidance", "2", "--seed", "1", "--device", "cpu"])
    assert rc == 0 and Image.open(out).size == (32, 32)  # 2 x 2 grid of 16 x 16 images
    first = out.read_bytes()
    assert main(["generate", "a large red circle", "--model", str(tiny_lm_dir), "--out", str(out),
                 "--num-images", "4", "--guidance", "2", "--seed", "1", "--device", "cpu"]) == 0
    assert out.read_bytes() == first  # same seed, same grid
    Image.open(out).crop((0, 0, 16, 16)).save(tmp_path / "one.png")
    capsys.readouterr()
    assert main(["caption", str(tmp_path / "one.png"), "--model", str(tiny_lm_dir), "--device", "cpu",
                 "--max-new-tokens", "4"]) == 0
    assert main(["ask", str(tmp_path / "one.png"), "what color is it?", "--model", str(tiny_lm_dir),
                 "--device", "cpu", "--max-new-tokens", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) >= 2


def test_cli_errors_are_clear(tiny_lm_dir, tmp_path, capsys):
    assert main(["generate", "x", "--model", str(tmp_path), "--out", str(tmp_path / "g.png")]) == 2
    assert "not a saved model directory" in capsys.readouterr().err
    assert main(["generate", "x", "--model", str(tiny_lm_dir), "--out", str(tmp_path / "g.png"),
                 "--guidance", "0.5", "--device", "cpu"]) == 2
    assert "guidance_scale" in capsys.readouterr().err
    (tmp_path / "bad.png").write_text("not an image")
    assert main(["caption", str(tmp_path / "bad.png"), "--model", str(tiny_lm_dir), "--device", "cpu"]) == 2
    assert "could not read an image" in capsys.readouterr().err

"""The `gaussiantoken generate | caption | ask` commands (thin wrappers over the pipelines).

    gaussiantoken generate "PROMPT" --model DIR --out grid.png [--num-images N --guidance G --seed S
        --temperature T --top-k K --top-p P --negative-prompt TEXT --batch-size B --candidates K
        --device cpu|cuda]
    gaussiantoken caption IMAGE --model DIR [--max-new-tokens N]
    gaussiantoken ask IMAGE "QUESTION" --model DIR [--max-new-tokens N]

Each returns 0 on success and 2 with a one-line error on bad input (bad model directory, bad image,
bad argument), so scripts can tell them apart from crashes. --model is checked by
`runtime.model_dirs.check_model_dir` (a saved gaussiantoken_lm with its tokenizer.json) before
transformers sees it; image files are read with `load_image_file` (errors name the file); the grid of
`generate` is written atomically (a reader sees the old file or the complete new one).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from gaussiantoken.lm.sampling_defaults import T2I_CANDIDATES, T2I_GUIDANCE_SCALE, T2I_TEMPERATURE


def image_grid(images, columns: int | None = None):
    """List of equally sized PIL images -> one PIL image, row-major, `columns` wide (default ~square)."""
    from PIL import Image

    if not images:
        raise ValueError("no images to put in a grid")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    w, h = images[0].size
    grid = Image.new("RGB", (columns * w, rows * h))
    for i, image in enumerate(images):
        grid.paste(image, ((i % columns) * w, (i // columns) * h))
    return grid


def _check_model_dir(path: str) -> str:
    from gaussiantoken.runtime.model_dirs import LM_KIND, check_model_dir

    check_model_dir(path, LM_KIND, "--model", needs_text_tokenizer=True)
    return path


def _check_out_file(path: str) -> str:
    """--out must be a new or existing image file (not a directory) with an extension PIL can write."""
    from PIL import Image

    if os.path.isdir(path):
        raise ValueError(f"--out {path} is a directory; give an image file name such as {path}/grid.png")
    ext = os.path.splitext(path)[1].lower()
    if ext not in Image.registered_extensions():
        raise ValueError(f"--out {path}: unknown image extension {ext or '(none)'!r}; use .png or .jpg")
    return path


def _read_image(path: str):
    from gaussiantoken.tokenizer.image_processing import load_image_file

    return load_image_file(path)


def _pipeline(task: str, model: str, device: str | None):
    from transformers import pipeline  # our tasks are registered by the package root (registration.py)

    return pipeline(task, model=_check_model_dir(model), device=device)


def _run(fn, argv) -> int:
    from gaussiantoken.runtime.model_dirs import PipelineModelError

    try:
        return fn(argv)
    except (ValueError, TypeError, FileNotFoundError, PipelineModelError, MemoryError) as err:
        print(f"gaussiantoken: error: {err}", file=sys.stderr)
        return 2


def _generate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gaussiantoken generate", description="text-to-image: write a grid of samples")
    p.add_argument("prompt")
    p.add_argument("--model", required=True, help="saved gaussiantoken_lm directory")
    p.add_argument("--out", required=True, help="output image file (PNG grid)")
    p.add_argument("--num-images", type=int, default=4)
    p.add_argument("--guidance", type=float, default=T2I_GUIDANCE_SCALE, help="classifier-free guidance scale (>= 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=T2I_TEMPERATURE)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--candidates", type=int, default=T2I_CANDIDATES,
                   help="each image the best of this many samples, as the LM captions them back (lm.rerank); 1: off")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = p.parse_args(argv)
    import torch
    from PIL import Image

    _check_out_file(args.out)
    pipe = _pipeline("text-to-image", args.model, args.device)
    generator = torch.Generator(device=pipe.device).manual_seed(args.seed)
    images = pipe(args.prompt, negative_prompt=args.negative_prompt, guidance_scale=args.guidance,
                  num_images_per_prompt=args.num_images, generator=generator, temperature=args.temperature,
                  top_k=args.top_k, top_p=args.top_p, batch_size=args.batch_size, num_candidates=args.candidates)
    import io

    from gaussiantoken.runtime.files import atomic_write_bytes

    buf = io.BytesIO()
    image_grid(images).save(buf, format=Image.registered_extensions()[os.path.splitext(args.out)[1].lower()])
    atomic_write_bytes(args.out, buf.getvalue())
    print(f"wrote {len(images)} image(s) for {args.prompt!r} to {args.out}")
    return 0


def _caption(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gaussiantoken caption", description="describe an image")
    p.add_argument("image")
    p.add_argument("--model", required=True)
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="default: 96 (lm.sampling_defaults.TEXT_MAX_NEW_TOKENS) or what the model's context leaves")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    from gaussiantoken.pipelines.image_text_to_text import CAPTION_TASK

    image = _read_image(args.image)
    pipe = _pipeline(CAPTION_TASK, args.model, args.device)
    length = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    print(pipe(image, **length)[0]["generated_text"])
    return 0


def _ask(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gaussiantoken ask", description="answer a question about an image")
    p.add_argument("image")
    p.add_argument("question")
    p.add_argument("--model", required=True)
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="default: 96 (lm.sampling_defaults.TEXT_MAX_NEW_TOKENS) or what the model's context leaves")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    if not args.question.strip():
        raise ValueError("the question is empty")
    from gaussiantoken.pipelines.image_text_to_text import VQA_TASK

    image = _read_image(args.image)
    pipe = _pipeline(VQA_TASK, args.model, args.device)
    length = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    print(pipe(image, args.question, **length)[0]["generated_text"])
    return 0


def generate(argv: list[str] | None = None) -> int:
    return _run(_generate, sys.argv[1:] if argv is None else argv)


def caption(argv: list[str] | None = None) -> int:
    return _run(_caption, sys.argv[1:] if argv is None else argv)


def ask(argv: list[str] | None = None) -> int:
    return _run(_ask, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    commands = {"generate": generate, "caption": caption, "ask": ask}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print("usage: python -m gaussiantoken.pipelines.commands {generate,caption,ask} ...", file=sys.stderr)
        sys.exit(2)
    sys.exit(commands[sys.argv[1]](sys.argv[2:]))

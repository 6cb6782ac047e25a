"""The `gaussiantoken` command line: one dispatcher, each subcommand's code imported only when run.

Every subcommand is a `main(argv: list[str]) -> int | None` function in the module that owns the
work (so `python -m gaussiantoken.tokenizer.train CONFIG` and `gaussiantoken train-tokenizer CONFIG`
are the same thing).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module:function, one-line help)
    "demo": ("gaussiantoken.pipelines.demo:main", "run the whole two-stage recipe on the Shapes world"),
    "train-tokenizer": ("gaussiantoken.tokenizer.train:main", "train the Gaussian tokenizer (accelerate)"),
    "eval-tokenizer": ("gaussiantoken.eval.reconstruction:main", "reconstruction metrics of a tokenizer"),
    "train-text-tokenizer": ("gaussiantoken.lm.text_tokenizer:main", "train a sentencepiece text vocabulary"),
    "extract-codes": ("gaussiantoken.lm.extract:main", "encode a dataset into image token ids"),
    "train-lm": ("gaussiantoken.lm.train:main", "train the multimodal LM (HF Trainer + DeepSpeed)"),
    "generate": ("gaussiantoken.pipelines.commands:generate", "text-to-image: write a grid of samples"),
    "caption": ("gaussiantoken.pipelines.commands:caption", "describe an image"),
    "ask": ("gaussiantoken.pipelines.commands:ask", "answer a question about an image"),
    "evaluate": ("gaussiantoken.eval.run:main", "run an evaluation config, write metrics.json + report.md"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: gaussiantoken COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `gaussiantoken COMMAND --help` for a command's arguments."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"gaussiantoken: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    result = func(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

"""The text vocabulary of the multimodal LM: train a sentencepiece model and save it as an HF tokenizer.

Owns `gaussiantoken train-text-tokenizer` (`main(argv)`), the default training corpus (Shapes captions,
questions, answers and the fixed prompt texts of `lm.sequences`), and `ensure_special_tokens`, which
gives any HF tokenizer (ours or a pretrained base model's) the specials the LM needs.

The trained tokenizer: sentencepiece unigram (or BPE) with byte_fallback (any text encodes, no <unk>),
converted with transformers' `SpmConverter.build_tokenizer_from_spm_proto` into a `tokenizers`
model and wrapped in `PreTrainedTokenizerFast`. Ids: 0 "<unk>", 1 "<s>" (bos, added in front of every
encoded text), 2 "</s>" (eos), 3 "<pad>", then "<boi>", "<eoi>", "<image>" (never split), then the
pieces. The LM's image token offset is `len(tokenizer)`.

    gaussiantoken train-text-tokenizer --out runs/text_tokenizer [--vocab-size 384] [--model-type unigram]
        [--text-file corpus.txt] [--num-samples 4000] [--seed 0]
The command exits with status 2 and one line on bad input (missing, non-UTF-8 or empty --text-file,
--out a file, a vocabulary sentencepiece cannot build).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Iterable

from gaussiantoken.lm.sequences import (
    SPECIAL_IMAGE_TOKENS,
    caption_prompt,
    unconditional_prompt,
    vqa_prompt,
)

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
MODEL_TYPES = ("unigram", "bpe")


def default_corpus(num_samples: int = 4000, seed: int = 0, image_size: int = 32) -> list[str]:
    """Shapes captions, questions and answers plus the fixed prompt texts (the LM's whole text world)."""
    from gaussiantoken.data.shapes import make_dataset

    ds = make_dataset(num_samples, seed=seed, image_size=image_size).remove_columns(["image"])
    texts = []
    for row in ds:  # the fixed prompt texts once per scene, so they get whole-word pieces
        texts += [unconditional_prompt(), caption_prompt(), vqa_prompt("")]
        texts.append(row["caption"])
        texts += list(row["questions"]) + list(row["answers"])
    return texts


def train_sentencepiece(texts: Iterable[str], vocab_size: int = 384, model_type: str = "unigram") -> bytes:
    """Train a sentencepiece model in memory and return its serialized proto."""
    import sentencepiece as spm

    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("the text corpus is empty")
    if vocab_size < 256 + 4 + len(SPECIAL_IMAGE_TOKENS) + 8:
        raise ValueError(f"vocab_size {vocab_size} too small: byte_fallback alone needs 256 byte pieces + specials")
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type=model_type,
        byte_fallback=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        unk_piece=UNK, bos_piece=BOS, eos_piece=EOS, pad_piece=PAD,
        user_defined_symbols=list(SPECIAL_IMAGE_TOKENS),
        split_digits=True,
        minloglevel=2,
        num_threads=1,
    )
    return buffer.getvalue()


def tokenizer_from_sentencepiece(proto_bytes: bytes):
    """Convert a serialized sentencepiece model into a PreTrainedTokenizerFast with our specials."""
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import SpmConverter

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(proto_bytes)
    pieces = [(p.piece, p.score) for p in proto.pieces]
    if proto.trainer_spec.model_type == sentencepiece_model_pb2.TrainerSpec.BPE:
        vocab = {piece: i for i, (piece, _) in enumerate(pieces)}
    else:
        vocab = pieces
    backend = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab, legacy=False)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, 1)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token=UNK, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        extra_special_tokens=list(SPECIAL_IMAGE_TOKENS), padding_side="right", clean_up_tokenization_spaces=False,
    )
    return tokenizer


def ensure_special_tokens(tokenizer):
    """Make sure `tokenizer` has pad/eos and the image specials; returns the number of tokens added.

    Used for pretrained base-model tokenizers; ours already has them (0 added).
    """
    added = 0
    if tokenizer.eos_token is None:
        raise ValueError("the text tokenizer has no eos token; the LM needs one to end sequences")
    missing = [t for t in SPECIAL_IMAGE_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        added += tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:
        added += tokenizer.add_special_tokens({"pad_token": PAD})
    for token in SPECIAL_IMAGE_TOKENS:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"special token {token!r} does not encode to a single id (got {ids})")
    return added


def train_text_tokenizer(
    texts: Iterable[str], vocab_size: int = 384, model_type: str = "unigram", out_dir: str | Path | None = None
):
    """Train and (optionally) save the text tokenizer; returns the PreTrainedTokenizerFast."""
    tokenizer = tokenizer_from_sentencepiece(train_sentencepiece(texts, vocab_size, model_type))
    if out_dir is not None:
        from gaussiantoken.runtime.files import atomic_directory

        with atomic_directory(out_dir) as tmp:
            tokenizer.save_pretrained(tmp)
    return tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gaussiantoken train-text-tokenizer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory to save the HF tokenizer in")
    parser.add_argument("--vocab-size", type=int, default=384)
    parser.add_argument("--model-type", choices=MODEL_TYPES, default="unigram")
    parser.add_argument("--text-file", default=None, help="one text per line (default: the Shapes corpus)")
    parser.add_argument("--num-samples", type=int, default=4000, help="Shapes scenes for the default corpus")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        tokenizer = _main(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # RuntimeError: sentencepiece's own checks
        print(f"gaussiantoken train-text-tokenizer: error: {exc}", file=sys.stderr)
        return 2
    print(f"saved text tokenizer ({len(tokenizer)} tokens, {args.model_type}) to {args.out}")
    return 0


def _main(args):
    """The command's work; bad input (missing/unreadable/empty --text-file, --out a file) is a ValueError."""
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a file, not a directory")
    if args.vocab_size <= 0:
        raise ValueError(f"--vocab-size must be positive, got {args.vocab_size}")
    if args.text_file is not None:
        path = Path(args.text_file)
        if not path.is_file():
            raise FileNotFoundError(f"--text-file not found: {path}")
        try:
            texts = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise ValueError(f"--text-file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        if not any(t.strip() for t in texts):
            raise ValueError(f"--text-file {path} holds no text")
    else:
        texts = default_corpus(args.num_samples, seed=args.seed)
    return train_text_tokenizer(texts, args.vocab_size, args.model_type, args.out)


if __name__ == "__main__":
    sys.exit(main())

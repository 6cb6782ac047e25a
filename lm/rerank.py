"""Best-of-N text-to-image: the LM draws several candidates per prompt and keeps the one it captions back best.

An autoregressive image model samples one object at a time, and at the demo's budget a sampled image is often
a near miss (a wrong colour, an extra object); the same LM's captioner, trained on the images it reads, is a
far better judge of a finished image than its sampler is of a half-drawn one. So, as Parti reranks with a
contrastive captioner and DALL-E with CLIP, but with no second model: each candidate is scored by the LM's own
teacher-forced log-likelihood of the prompt as the image's caption, in the captioning task's exact format
(`lm.sequences.build_caption`; the image re-encoded from its pixels and read as captioning reads any image),
eos included, so an image with an extra object (whose caption would go on) scores low.

The captioner writes one phrasing of a scene (canonical captions: objects left to right), while a prompt may
phrase the same claim another way; a candidate's score is therefore the log of the probability of ANY phrasing
of the prompt's claim (`data.shapes_text.equivalent_captions`; a prompt outside the Shapes grammar is scored
as it is).

Owns `caption_log_likelihood` (log p(caption | image) for image-caption pairs), `claim_scores` (the prompt's
phrasings combined), `best_of` (argmax over each prompt's candidates), `best_candidates` (the two together:
what `lm.generation.generate_images(num_candidates=K)` and the text-to-image evaluation keep) and `candidates_for`
(how many to draw: one under greedy sampling).
"""

from __future__ import annotations

from typing import Sequence

import torch


@torch.no_grad()
def caption_log_likelihood(model, processor, pixels: torch.Tensor, captions: Sequence[str],
                           batch_size: int = 32) -> torch.Tensor:
    """Images pixels [N, 3, S, S] in [-1, 1] and one caption each -> log p(caption + eos | image) [N] (float32),
    teacher-forced in the captioning format the LM was trained on."""
    from gaussiantoken.lm.data import SequenceCollator
    from gaussiantoken.lm.generation import check_context
    from gaussiantoken.lm.sequences import IGNORE_INDEX, VocabLayout, build_caption

    if pixels.ndim != 4 or pixels.shape[0] != len(captions):
        raise ValueError(f"need one caption per image, got {len(captions)} caption(s) for pixels {tuple(pixels.shape)}")
    tokenizer = getattr(processor, "tokenizer", processor)
    layout = VocabLayout.from_config(model.config, tokenizer)
    collate = SequenceCollator(layout.pad_token_id)  # right-padded as in training: positions from 0 in every row
    param = next(model.parameters())
    out = []
    for s in range(0, len(captions), batch_size):
        chunk = pixels[s:s + batch_size].to(device=param.device, dtype=torch.float32)  # [b, 3, S, S]
        codes = (model.encode_images(chunk) - model.config.image_token_offset).tolist()  # LOCAL [b, T]
        if getattr(model.config, "input_layout", "grid") == "objects":
            from gaussiantoken.lm.object_inputs import input_spans

            spans = input_spans(model, chunk, codes)
        else:
            spans = [None] * len(codes)
        rows = [build_caption(tokenizer, c, k, layout, span=sp) for c, k, sp in
                zip(captions[s:s + batch_size], codes, spans)]
        for r in rows:  # a caption past the context would be scored where the LM never trained: refuse
            check_context(model.config, len(r["input_ids"]), 0)
        batch = collate(rows)  # input_ids / attention_mask / labels [b, L]
        logits = model(input_ids=batch["input_ids"].to(param.device),
                       attention_mask=batch["attention_mask"].to(param.device)).logits  # [b, L, V]
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # [b, L-1, V]: predicts token t+1
        target = batch["labels"][:, 1:].to(param.device)  # [b, L-1]
        keep = target != IGNORE_INDEX
        picked = logp.gather(-1, target.clamp(min=0)[..., None])[..., 0]  # [b, L-1]
        out.append((picked * keep).sum(dim=1).cpu())
    return torch.cat(out)  # [N]


def claim_scores(model, processor, pixels: torch.Tensor, prompts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """Images [N, 3, S, S] and the prompt each was drawn for -> log p(any phrasing of the prompt's claim | image)
    [N]: the logsumexp of `caption_log_likelihood` over `equivalent_captions(prompt)`."""
    from gaussiantoken.data.shapes_text import equivalent_captions

    phrasings = [equivalent_captions(p) for p in prompts]
    index = torch.tensor([i for i, ps in enumerate(phrasings) for _ in ps])  # the image of each phrasing
    scores = caption_log_likelihood(model, processor, pixels[index], [t for ps in phrasings for t in ps], batch_size)
    return torch.stack([torch.logsumexp(g, dim=0) for g in scores.split([len(ps) for ps in phrasings])])  # [N]


def best_of(scores: torch.Tensor, candidates: int) -> torch.LongTensor:
    """scores [N * candidates] (each image's candidates adjacent) -> the index of each image's best [N]
    (the first on ties)."""
    if scores.ndim != 1 or scores.numel() % candidates:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {candidates} candidates")
    groups = scores.view(-1, candidates)  # [N, K]
    return groups.argmax(dim=1) + torch.arange(groups.shape[0]) * candidates


def candidates_for(num_candidates, temperature: float) -> int:
    """THE rule for how many candidates to draw: an int >= 1 (else ValueError naming num_candidates), and one under
    greedy sampling (temperature 0), whose candidates would all be the same image."""
    if isinstance(num_candidates, bool) or not isinstance(num_candidates, int) or num_candidates < 1:
        raise ValueError(f"num_candidates must be an int >= 1, got {num_candidates!r}")
    return 1 if temperature == 0 else num_candidates


def best_candidates(model, processor, pixels: torch.Tensor, prompts: Sequence[str], candidates: int,
                    batch_size: int = 32) -> torch.LongTensor:
    """Candidates pixels [N * K, 3, S, S] in [-1, 1] (each image's K candidates adjacent) and the prompt of each
    [N * K] -> the index of each image's kept candidate [N] (the best claim score)."""
    return best_of(claim_scores(model, processor, pixels, prompts, batch_size), candidates)


__all__ = ["caption_log_likelihood", "claim_scores", "best_of", "best_candidates", "candidates_for"]

"""The generation defaults. Text (captions, answers): TEXT_MAX_NEW_TOKENS new tokens at most, enough for the
longest describe-then-answer reply (a cued scan of a three-object relation question: about 67 tokens with the demo's
text vocabulary; generation stops at eos, so the bound costs nothing on shorter replies); a reply nobody asked a
length for gets what the model's context leaves, if less (`lm.generation.default_text_tokens`).

The text-to-image sampling defaults: the one place the pipeline, the CLI, `generate_images`, the evaluation
harness and the benches take them from (no torch import: read by argument parsers).

Chosen on validation prompt sets (`bench/lm_quality.py --model DIR --prompt-seed 4321 --temperature T --guidance G`,
not the reported test sets), five of the demo's LMs at 2,500 steps (two tokenizers, three recipes, three seeds):
mean text-to-image accuracy 0.47 at temperature 0.5 / guidance 1.5 and 0.48 at 0.3 / 1.5 (within noise; the
higher temperature keeps more variety), 0.42 at 0.7 / 1.5, 0.37 at 0.5 / 3, and 0.29-0.37 at temperature 1.0
(bench/RESULTS.md, 2026-12-06). Strong guidance (3 and 5) mostly costs counts: extra objects appear.

Each image is the best of T2I_CANDIDATES samples as the LM captions them back (`lm.rerank`; 1 turns it off).
Chosen on validation prompts (`bench/t2i_rerank.py --prompt-seed 777`), two of the demo's LMs at 2,500 steps:
all-prompt accuracy 0.78 / 0.66 for one sample, 0.88 / 0.78 for the best of 2, 0.90 / 0.87 of 4, 0.93 / 0.89 of 8,
at temperature 0.5 (0.7 and 1.0 gain less: one sample is worse and the best of 8 no better); in the harness the
best of 4 takes 3.8x one sample's time, scoring included (bench/RESULTS.md, 2026-12-07).
"""

TEXT_MAX_NEW_TOKENS = 96
T2I_GUIDANCE_SCALE = 1.5
T2I_TEMPERATURE = 0.5
T2I_CANDIDATES = 4

__all__ = ["TEXT_MAX_NEW_TOKENS", "T2I_GUIDANCE_SCALE", "T2I_TEMPERATURE", "T2I_CANDIDATES"]

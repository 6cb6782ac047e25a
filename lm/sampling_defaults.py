"""The text-to-image sampling defaults: the one place the pipeline, the CLI, `generate_images`, the evaluation
harness and the benches take them from (no torch import: read by argument parsers).

Chosen on validation prompt sets (`bench/lm_quality.py --model DIR --prompt-seed 4321 --temperature T --guidance G`,
not the reported test sets), five of the demo's LMs at 2,500 steps (two tokenizers, three recipes, three seeds):
mean text-to-image accuracy 0.47 at temperature 0.5 / guidance 1.5 and 0.48 at 0.3 / 1.5 (within noise; the
higher temperature keeps more variety), 0.42 at 0.7 / 1.5, 0.37 at 0.5 / 3, and 0.29-0.37 at temperature 1.0
(bench/RESULTS.md, 2026-12-06). Strong guidance (3 and 5) mostly costs counts: extra objects appear.
"""

T2I_GUIDANCE_SCALE = 1.5
T2I_TEMPERATURE = 0.5

__all__ = ["T2I_GUIDANCE_SCALE", "T2I_TEMPERATURE"]

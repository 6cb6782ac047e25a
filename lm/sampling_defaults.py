"""The text-to-image sampling defaults: the one place the pipeline, the CLI, `generate_images`, the evaluation
harness and the benches take them from (no torch import: read by argument parsers).

Chosen on validation prompt sets (`bench/lm_quality.py --prompt-seed 4321`, not the reported test sets) with
the demo's LM at 2,500 steps: temperature 0.5 against 1.0 at guidance 3 raised text-to-image accuracy from
0.37 to 0.50; guidance 1.5 / 2 / 3 were within noise of each other at low temperature, 5 was worse
(bench/RESULTS.md, 2026-12-05).
"""

T2I_GUIDANCE_SCALE = 3.0
T2I_TEMPERATURE = 0.5

__all__ = ["T2I_GUIDANCE_SCALE", "T2I_TEMPERATURE"]

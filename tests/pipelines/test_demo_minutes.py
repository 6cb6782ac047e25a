"""`gaussiantoken demo --minutes N [--vqa-minutes M]`: the plan gives the LM the extra minutes (the tokenizer keeps
its 5) less the VQA stage's, too few minutes, --quick with --minutes and --vqa-minutes without --minutes are refused
with a one-line error (exit 2)."""

import subprocess
import sys

import pytest

from gaussiantoken.pipelines.demo import OTHER_STAGES_MINUTES, PLANS, VQA_STAGE_OVERHEAD_MINUTES, plan_for


def test_plan_for_minutes():
    assert plan_for() == ("default", PLANS["default"]) and plan_for(quick=True) == ("quick", PLANS["quick"])
    flavour, plan = plan_for(minutes=60)
    assert flavour == "minutes-60" and plan.tokenizer_minutes == PLANS["default"].tokenizer_minutes
    assert plan.lm_minutes == 60 - plan.tokenizer_minutes - OTHER_STAGES_MINUTES
    assert plan.lm_steps >= 400 * plan.lm_minutes  # the cap stays out of reach: the cosine follows the clock
    assert "data.source=shapes_stream" in plan.extra_lm
    with pytest.raises(ValueError, match="--minutes 7"):
        plan_for(minutes=7)
    assert plan.vqa_minutes == 0 == PLANS["default"].vqa_minutes and PLANS["quick"].vqa_minutes > 0


def test_plan_for_vqa_minutes():
    flavour, plan = plan_for(minutes=40, vqa_minutes=14)
    assert flavour == "minutes-40-vqa-14" and plan.vqa_minutes == 14
    assert plan.lm_minutes == 40 - plan.tokenizer_minutes - OTHER_STAGES_MINUTES - 14 - VQA_STAGE_OVERHEAD_MINUTES
    for kwargs, match in (({"vqa_minutes": 5}, "--vqa-minutes is taken out of --minutes"),
                          ({"quick": True, "vqa_minutes": 5}, "--vqa-minutes"),
                          ({"minutes": 30, "vqa_minutes": 0}, "must be positive"),
                          ({"minutes": 20, "vqa_minutes": 13}, "--minutes 20 leaves the LM")):
        with pytest.raises(ValueError, match=match):
            plan_for(**kwargs)


def test_demo_cli_refuses_bad_minutes(tmp_path):
    for extra in (["--quick", "--minutes", "30"], ["--minutes", "5"], ["--vqa-minutes", "5"],
                  ["--minutes", "20", "--vqa-minutes", "13"]):
        proc = subprocess.run([sys.executable, "-m", "gaussiantoken", "demo", "--out", str(tmp_path / "d"), *extra],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "minutes" in proc.stderr and "Traceback" not in proc.stderr


def test_with_precision_sets_both_trainers_and_moves_tokenizer_minutes_to_the_lm():
    from gaussiantoken.pipelines.demo import BF16_TOKENIZER_SHARE, with_precision

    base = PLANS["default"]
    fp32 = with_precision(base, "fp32", on_cuda=False)
    assert (fp32.tokenizer_minutes, fp32.lm_minutes) == (base.tokenizer_minutes, base.lm_minutes)
    assert fp32.extra_tokenizer[-1] == "train.mixed_precision=no" and "train.bf16=false" in fp32.extra_lm
    assert not any("attn_implementation" in o for o in fp32.extra_lm)
    bf16 = with_precision(base, "bf16", on_cuda=False)
    assert bf16.tokenizer_minutes == round(base.tokenizer_minutes * BF16_TOKENIZER_SHARE, 2) < base.tokenizer_minutes
    assert bf16.tokenizer_minutes + bf16.lm_minutes == base.tokenizer_minutes + base.lm_minutes  # same total
    assert "train.mixed_precision=bf16" in bf16.extra_tokenizer
    assert {"train.bf16=true", "model.attn_implementation=eager"} <= set(bf16.extra_lm)
    assert "model.attn_implementation=eager" not in with_precision(base, "bf16", on_cuda=True).extra_lm  # GPUs: sdpa
    assert base.extra_lm == PLANS["default"].extra_lm  # the shared plan is not changed in place

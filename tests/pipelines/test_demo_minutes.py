"""`gaussiantoken demo --minutes N`: the plan gives the LM the extra minutes (the tokenizer keeps its 5), too few
minutes and --quick with --minutes are refused with a one-line error (exit 2)."""

import subprocess
import sys

import pytest

from gaussiantoken.pipelines.demo import OTHER_STAGES_MINUTES, PLANS, plan_for


def test_plan_for_minutes():
    assert plan_for() == ("default", PLANS["default"]) and plan_for(quick=True) == ("quick", PLANS["quick"])
    flavour, plan = plan_for(minutes=60)
    assert flavour == "minutes-60" and plan.tokenizer_minutes == PLANS["default"].tokenizer_minutes
    assert plan.lm_minutes == 60 - plan.tokenizer_minutes - OTHER_STAGES_MINUTES
    assert plan.lm_steps >= 400 * plan.lm_minutes  # the cap stays out of reach: the cosine follows the clock
    assert "data.source=shapes_stream" in plan.extra_lm
    with pytest.raises(ValueError, match="--minutes 8"):
        plan_for(minutes=8)


def test_demo_cli_refuses_bad_minutes(tmp_path):
    for extra in (["--quick", "--minutes", "30"], ["--minutes", "5"]):
        proc = subprocess.run([sys.executable, "-m", "gaussiantoken", "demo", "--out", str(tmp_path / "d"), *extra],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "minutes" in proc.stderr and "Traceback" not in proc.stderr

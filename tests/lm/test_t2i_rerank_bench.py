"""bench/t2i_rerank.py: its rates on candidates and judges of known behaviour (half the candidates right, a judge
that knows which, one that prefers the wrong ones), and the command end to end in a fresh process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))


def test_rates_on_known_candidates_and_judges(lm_dir, monkeypatch):
    """Candidates alternate wrong (another scene's image), right (the prompt's own scene): one sample scores 0.5,
    the oracle 1 from two candidates on; a judge that scores right images higher picks the oracle, one that
    scores them lower picks 0."""
    import t2i_rerank

    import gaussiantoken.eval.text_to_image as t2i
    import gaussiantoken.lm.rerank as rerank
    from gaussiantoken.data.shapes import make_dataset, parse_scene, scene_matches_caption
    from gaussiantoken.eval.feature_nets import image_to_tensor

    rows = make_dataset(30, seed=4, image_size=16)
    by_count = {k: [r for r in rows if len(r["objects"]) == k][:2] for k in (1, 2, 3)}
    assert all(len(v) == 2 for v in by_count.values())
    sets = {"one": by_count[1], "two_unseen": by_count[2], "three_unseen": by_count[3]}
    image = {r["caption"]: image_to_tensor(r["image"]) * 2 - 1 for v in sets.values() for r in v}  # [3, S, S]
    captions = list(image)
    monkeypatch.setattr(t2i, "prompt_sets", lambda n, seed, image_size: {k: [r["caption"] for r in v]
                                                                         for k, v in sets.items()})

    def candidates(model, processor, prompts, images_per_prompt, **kw):  # wrong, right, wrong, right, ...
        out = []
        for p in prompts:
            other = captions[(captions.index(p) + 1) % len(captions)]
            out += [image[other] if j % 2 == 0 else image[p] for j in range(images_per_prompt)]
        return torch.stack(out)

    monkeypatch.setattr(t2i, "generate_for_prompts", candidates)

    def judge(sign):
        def score(model, processor, pixels, prompts, batch_size=32):
            return torch.tensor([sign * float(scene_matches_caption(parse_scene(im), p)["correct"])
                                 for im, p in zip(pixels, prompts)])
        return score

    for sign, picked in ((1.0, 1.0), (-1.0, 0.0)):
        monkeypatch.setattr(rerank, "claim_scores", judge(sign))
        monkeypatch.setattr(rerank, "caption_log_likelihood", judge(sign))
        out = t2i_rerank.study(str(lm_dir), candidates=4, temperature=0.5, guidance=1.5, prompts_per_set=2,
                               prompt_seed=1234, seed=0)
        got = {(r["set"], r["k"]): r for r in out["rows"]}
        assert set(got) == {(s, k) for s in ("one", "two_unseen", "three_unseen", "all") for k in (1, 2, 4)}
        assert got[("all", 1)]["sample"] == got[("all", 1)]["claim"] == got[("all", 1)]["oracle"] == 0.0
        for s in ("one", "two_unseen", "three_unseen", "all"):
            assert got[(s, 4)]["sample"] == 0.5 and got[(s, 4)]["oracle"] == 1.0 and got[(s, 2)]["oracle"] == 1.0
            assert got[(s, 4)]["claim"] == got[(s, 4)]["phrasing"] == picked
        assert got[("all", 4)]["prompts"] == 6


# a fresh process, the way a user runs it
def test_t2i_rerank_command(lm_dir, tmp_path):
    out = tmp_path / "rerank.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "t2i_rerank.py"), "--model", str(lm_dir),
                           "--candidates", "2", "--prompts", "2", "--json", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "oracle" in proc.stdout and "seconds per candidate" in proc.stdout
    data = json.loads(out.read_text())
    assert {(r["set"], r["k"]) for r in data["rows"]} == {(s, k) for s in ("one", "two_unseen", "three_unseen", "all")
                                                          for k in (1, 2)}
    assert all(r["oracle"] >= max(r["claim"], r["sample"]) for r in data["rows"])
    bad = subprocess.run([sys.executable, str(REPO / "bench" / "t2i_rerank.py"), "--model", str(lm_dir),
                          "--candidates", "0"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--candidates" in bad.stderr

"""The stock `image-text-to-text` task on our LM: plain text, chat messages, batches, return_full_text,
max_new_tokens / generate_kwargs, the processor's chat template; answers equal our captioning / VQA tasks."""

import numpy as np
import pytest
from PIL import Image
from transformers import AutoProcessor, pipeline

import gaussiantoken  # noqa: F401  (registers our tasks and auto classes)
from gaussiantoken.lm.sequences import caption_prompt, chat_template, vqa_prompt

Q = "what color is the circle?"


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(3)]


@pytest.fixture(scope="module")
def pipes(tiny_lm_dir):
    return {task: pipeline(task, model=str(tiny_lm_dir), device="cpu")
            for task in ("image-text-to-text", "gaussiantoken-captioning", "gaussiantoken-vqa")}


def _chat(image, text):
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]


def _new_text(records):
    return [r["generated_text"].strip() for r in records]


def test_plain_text_and_chat_give_the_answers_of_our_tasks(pipes, images):
    itt, cap, vqa = pipes["image-text-to-text"], pipes["gaussiantoken-captioning"], pipes["gaussiantoken-vqa"]
    caption = cap(images[0], max_new_tokens=6)[0]["generated_text"]
    answer = vqa(images[1], Q, max_new_tokens=4)[0]["generated_text"]
    kw = dict(return_full_text=False)
    assert _new_text(itt(images=images[0], text="Describe the image.", max_new_tokens=6, **kw)) == [caption]
    assert _new_text(itt(images=images[1], text=Q, max_new_tokens=4, **kw)) == [answer]
    assert _new_text(itt(text=_chat(images[0], "Describe the image."), max_new_tokens=6, **kw)) == [caption]
    assert _new_text(itt(text=_chat(images[1], Q), max_new_tokens=4, **kw)) == [answer]
    # our raw prompt format (text with the placeholder) is used as is
    assert _new_text(itt(images=images[1], text=vqa_prompt(Q), max_new_tokens=4, **kw)) == [answer]


def test_a_batch_of_prompts_with_an_images_list(pipes, images):
    itt, vqa = pipes["image-text-to-text"], pipes["gaussiantoken-vqa"]
    questions = [Q, "how many objects are there?", "Describe the image."]  # different lengths: left padding
    batch = itt(images=images, text=questions, max_new_tokens=5, return_full_text=False)
    singles = [vqa(im, q, max_new_tokens=5)[0]["generated_text"] for im, q in zip(images, questions)]
    assert _new_text(batch) == singles
    assert [r["input_text"] for r in batch] == questions


def test_return_full_text_max_new_tokens_and_generate_kwargs(pipes, images):
    itt = pipes["image-text-to-text"]
    tok = itt.processor.tokenizer
    new = itt(images=images[1], text=Q, max_new_tokens=3, return_full_text=False)[0]["generated_text"]
    full = itt(images=images[1], text=Q, max_new_tokens=3)[0]["generated_text"]
    assert full == Q + new
    assert len(tok(new.strip(), add_special_tokens=False)["input_ids"]) <= 3
    via_kwargs = itt(images=images[1], text=Q, generate_kwargs={"max_new_tokens": 3}, return_full_text=False)
    assert via_kwargs[0]["generated_text"] == new
    chat = itt(text=_chat(images[1], Q), max_new_tokens=3)[0]["generated_text"]  # full text of a chat: messages
    assert chat[-1] == {"role": "assistant", "content": new} and chat[0]["role"] == "user"
    with pytest.raises(ValueError, match="context"):
        itt(images=images[1], text=Q, max_new_tokens=1000)
    # without max_new_tokens: the model's saved default (96, or what this tiny context leaves), not the pipeline's 256
    from gaussiantoken.lm.modeling import TEXT_MAX_NEW_TOKENS

    assert itt.model.generation_config.max_new_tokens == TEXT_MAX_NEW_TOKENS
    default = itt(images=images[1], text=Q, return_full_text=False)[0]["generated_text"]
    assert len(tok(default.strip(), add_special_tokens=False)["input_ids"]) <= TEXT_MAX_NEW_TOKENS


def test_processor_chat_template_is_saved_and_applies(tiny_lm_dir, images):
    assert (tiny_lm_dir / "chat_template.jinja").read_text() == chat_template()
    proc = AutoProcessor.from_pretrained(tiny_lm_dir)
    assert proc.chat_template == chat_template()
    bare = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image."}]}]
    assert proc.apply_chat_template(bare, tokenize=False, add_generation_prompt=True) == caption_prompt()
    assert proc.apply_chat_template(_chat(images[0], f"  {Q} "), tokenize=False, add_generation_prompt=True) == vqa_prompt(Q)
    ids = proc.apply_chat_template(_chat(images[0], Q), tokenize=True, add_generation_prompt=True, return_dict=True,
                                   return_tensors="pt")
    direct = proc(images=images[0], text=vqa_prompt(Q))
    assert ids["input_ids"].tolist() == direct["input_ids"].tolist()
    assert (ids["pixel_values"] == direct["pixel_values"]).all()
    two_turns = _chat(images[0], Q) + [{"role": "assistant", "content": "red"}, {"role": "user", "content": Q}]
    assert proc.apply_chat_template(two_turns, tokenize=False) == vqa_prompt(Q) + " red" + proc.tokenizer.eos_token \
        + vqa_prompt(Q)[len("<image>"):]
    with pytest.raises(Exception, match="system"):
        proc.apply_chat_template([{"role": "system", "content": "be brief"}] + bare, tokenize=False)


@pytest.mark.parametrize("marker", ["<image>", "<boi>", "<eoi>"])
def test_user_text_is_text(pipes, images, marker):
    question = f"what is {marker} here?"
    with pytest.raises(ValueError, match=f"question .*contains {marker}"):
        pipes["gaussiantoken-vqa"](images[0], question)
    with pytest.raises(ValueError, match=f"contains {marker}"):
        pipes["image-text-to-text"](text=_chat(images[0], question))


def test_a_describe_then_answer_reply_returns_its_answer(tiny_lm_dir):
    """In a fresh process, as a user runs it: a reply "{rationale}, so {answer}" (data.vqa_rationale models) comes
    out of the stock pipeline's decoding as the answer alone, as new text and as full text, the way generate_text
    (our VQA task) returns it; a plain answer decodes as before."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np, torch\n"
        "from PIL import Image\n"
        "from transformers import pipeline\n"
        "from transformers.pipelines.image_text_to_text import ReturnType\n"
        "import gaussiantoken\n"
        f"Q = {Q!r}\n"
        "itt = pipeline('image-text-to-text', model=sys.argv[1], device='cpu')\n"
        "tok = itt.processor.tokenizer\n"
        "image = Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8))\n"
        "prompt = itt.processor(images=image, text=Q, return_tensors='pt')['input_ids']  # [1, L]\n"
        "def run(text, kind):\n"
        "    reply = tok(text, add_special_tokens=False)['input_ids'] + [tok.eos_token_id]\n"
        "    out = {'generated_sequence': torch.cat([prompt, torch.tensor([reply])], 1), 'prompt_text': Q, 'input_ids': prompt}\n"
        "    return itt.postprocess(out, return_type=kind)[0]['generated_text']\n"
        "reasoned = ' a small red circle to the left of a large blue square, so red'\n"
        "assert run(reasoned, ReturnType.NEW_TEXT) == 'red'\n"
        "assert run(reasoned, ReturnType.FULL_TEXT) == Q + 'red'\n"
        "assert run(' red', ReturnType.NEW_TEXT).strip() == 'red'\n"
        "print('OK')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tiny_lm_dir)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]

"""Fresh training data for stage two: new Shapes scenes, encoded on the fly by the frozen image tokenizer.

Owns `ShapesCodeStream` (the row source), `StreamState` (the stream position written into each
checkpoint) and `sequential_sampler_for` (the one switch that makes the Trainer read a stream in order).

- Row i of the stream is a pure function of (seed, i): rows come in chunks of `chunk_size`; chunk k of
  rank part r is drawn from `numpy.random.default_rng([seed, r, k])` (scenes, then each scene's caption and
  questions, as `data.shapes.make_dataset` does), rendered, and encoded in one batch by the frozen
  tokenizer (eval mode, no grad). Scenes whose caption is a held-out composition
  (`data.shapes_text.is_heldout_composition`) are skipped, so the text-to-image evaluation's unseen
  compositions are never trained on. No scene repeats (the stream is as long as the run needs).
- Each rank draws its own part: the Trainer's batch sampler gives rank r the per-device batches
  r, r + W, r + 2W, ... of a sequential order (accelerate's sharding), and `row_source` maps a global row to
  (rank part, local row), so a rank only ever renders and encodes its own chunks.
- Exact resume: the data order is sequential and pure, so the position is global_step x per-device batch
  x gradient accumulation x world size; the Trainer's resume skips that many rows without fetching them.
  `StreamState` records the position and the stream's identity in OUTPUT/checkpoint-N/stream_state.json
  and a resume checks it (a changed seed / chunk size / world size would silently change the data).
- Every row holds "scene": its objects (shape, color, size and centre x, y in pixels), for rationales that
  need positions (`data.shapes_text.scan_rationale`'s relation scan).
- With `object_radius` the rows also hold "objects": the slots of the Gaussians that draw each object, in
  the caption's order (`lm.object_layout`), for the object-major text-to-image layout.
- With `canonical_captions` each row also holds "caption_canonical" (`caption_for` without a random draw:
  objects left to right, the relation on the axis of the larger offset), the captioning task's target under
  `data.caption_style: canonical`; scenes whose canonical caption is a held-out composition are skipped too.
- With `t2i_lattice` each row also holds a second scene for text-to-image targets ("t2i_codes", "t2i_caption",
  and "t2i_objects" with `object_radius`), drawn from `numpy.random.default_rng([seed, r, k, 1])` with every
  object centred on one of the tokenizer's anchors (`data.shapes_world.sample_scenes_on`); captioning and
  VQA keep the free scene.
- The extract-codes path (`lm.data` over a saved codes dataset) stays for real datasets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

STATE_FILE = "stream_state.json"
SCENE_KEYS = ("shape", "color", "size", "x", "y")  # a row's "scene": its objects with these keys


class ShapesCodeStream:
    """Dataset-like row source {"codes", "caption", "questions", "answers"} for `MultiTaskSequenceDataset`."""

    def __init__(self, tokenizer, length: int, seed: int = 0, chunk_size: int = 256, per_device_batch: int = 16,
                 world_size: int = 1, num_questions: int = 3, encode_batch: int = 256, object_radius: int | None = None,
                 t2i_lattice: bool = False, image_groups: int = 0, canonical_captions: bool = False):
        from gaussiantoken.tokenizer import GaussianTokenizer

        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = GaussianTokenizer.from_pretrained(os.fspath(tokenizer), dtype=torch.float32)
        for name, value in (("length", length), ("chunk_size", chunk_size), ("per_device_batch", per_device_batch),
                            ("world_size", world_size), ("encode_batch", encode_batch)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"stream {name} must be a positive int, got {value!r}")
        self.tokenizer = tokenizer.eval()
        for p in self.tokenizer.parameters():
            p.requires_grad_(False)
        self.length, self.seed, self.chunk_size = int(length), int(seed), int(chunk_size)
        self.batch, self.world, self.num_questions, self.encode_batch = per_device_batch, world_size, num_questions, encode_batch
        self.image_size = int(tokenizer.config.image_size)
        # object_radius: also give each row's "objects" (lm.object_layout.assign_gaussians with this radius)
        self.object_radius = None if object_radius is None else int(object_radius)
        # "scene": the scene's objects (shape, color, size, centre x, y in pixels), for rationales that need positions
        self.column_names = ["codes", "caption", "questions", "answers", "scene"] + (["objects"] if object_radius is not None else [])
        self.t2i_lattice = bool(t2i_lattice)
        self.image_groups = int(image_groups)  # > 0: rows hold "groups" (lm.object_groups of the rendered scene)
        # rows also hold "caption_canonical" (objects left to right, no random draw) for the captioning task
        self.canonical_captions = bool(canonical_captions)
        if self.canonical_captions:
            self.column_names.append("caption_canonical")
        if self.image_groups:
            self.column_names.append("groups")
        if self.t2i_lattice:
            self.column_names += ["t2i_codes", "t2i_caption"] + (["t2i_objects"] if object_radius is not None else [])
        self._cache: tuple[tuple[int, int], dict] | None = None

    def __len__(self) -> int:
        return self.length

    def identity(self) -> dict:
        """What must agree between a checkpoint and a resume for the data to continue exactly."""
        return {"seed": self.seed, "chunk_size": self.chunk_size, "per_device_batch": self.batch,
                "world_size": self.world, "num_questions": self.num_questions, "image_size": self.image_size,
                "object_radius": self.object_radius, "t2i_lattice": self.t2i_lattice, "image_groups": self.image_groups,
                "canonical_captions": self.canonical_captions}

    def row_source(self, index: int) -> tuple[int, int]:
        """Global row -> (rank part, local row in that part)."""
        b, within = divmod(int(index), self.batch)
        rank_round, part = divmod(b, self.world)
        return part, rank_round * self.batch + within

    def scenes(self, part: int, chunk: int) -> tuple[list, list, list, list]:
        """Chunk `chunk` of rank part `part`: (scenes, captions, questions, answers), held-out compositions skipped."""
        from gaussiantoken.data.shapes_text import caption_for, is_heldout_composition, questions_for
        from gaussiantoken.data.shapes_world import sample_scenes

        rng = np.random.default_rng([self.seed, part, chunk])
        scenes, captions, questions, answers = [], [], [], []
        while len(scenes) < self.chunk_size:
            for scene in sample_scenes(rng, self.chunk_size, self.image_size):
                caption = caption_for(scene, rng)
                q, a = questions_for(scene, rng, self.num_questions)
                held = is_heldout_composition(caption) or (self.canonical_captions
                                                            and is_heldout_composition(caption_for(scene)))
                if held or len(scenes) == self.chunk_size:
                    continue
                scenes.append(scene)
                captions.append(caption)
                questions.append(q)
                answers.append(a)
        return scenes, captions, questions, answers

    def anchor_centres(self) -> list[tuple[float, float]]:
        """The tokenizer's anchor positions in pixel units (x, y): where `t2i_lattice` scenes centre objects."""
        a = self.tokenizer.anchor_position.detach().float()  # [M, 2]
        if self.tokenizer.config.position_mode == "absolute":
            a = torch.tanh(a)
        return [tuple(v) for v in ((a + 1) / 2 * self.image_size).tolist()]

    def lattice_scenes(self, part: int, chunk: int) -> tuple[list, list]:
        """Chunk `chunk` of rank part `part`, `t2i_lattice` half: (scenes centred on anchors, captions)."""
        from gaussiantoken.data.shapes_text import caption_for, is_heldout_composition
        from gaussiantoken.data.shapes_world import sample_scenes_on

        rng = np.random.default_rng([self.seed, part, chunk, 1])
        scenes, captions = [], []
        while len(scenes) < self.chunk_size:
            for scene in sample_scenes_on(rng, self.chunk_size, self.anchor_centres(), self.image_size):
                caption = caption_for(scene, rng)
                if is_heldout_composition(caption) or len(scenes) == self.chunk_size:
                    continue
                scenes.append(scene)
                captions.append(caption)
        return scenes, captions

    @torch.no_grad()
    def _encode(self, scenes: list, captions: list, groups: int = 0) -> dict:
        """Render + encode scenes: {"codes"} (+ {"objects"}: slot lists per object in caption order; + {"groups"}:
        each Gaussian's object group of the rendered image, `lm.object_groups`, when `groups` > 0)."""
        from gaussiantoken.data.shapes_render import render_batch
        from gaussiantoken.lm.extract import encode_uint8

        images = render_batch(scenes, self.image_size)  # [C, S, S, 3] uint8
        codes = encode_uint8(self.tokenizer, images, self.encode_batch)  # [C, T]
        out = {"codes": codes.tolist()}
        if groups:
            from gaussiantoken.lm.object_groups import object_groups

            out["groups"] = object_groups(images, self.tokenizer.ids_to_gaussians(codes)["means"], groups).tolist()
        if self.object_radius is not None:
            from gaussiantoken.lm.object_layout import assign_gaussians, caption_order

            owners = assign_gaussians(self.tokenizer.ids_to_gaussians(codes)["means"], scenes, self.image_size,
                                      self.object_radius)
            out["objects"] = [[slots[i] for i in caption_order(scene, caption)]
                              for slots, scene, caption in zip(owners, scenes, captions)]
        return out

    def _chunk(self, part: int, chunk: int) -> dict:
        scenes, captions, questions, answers = self.scenes(part, chunk)
        out = {**self._encode(scenes, captions, groups=self.image_groups), "caption": captions, "questions": questions,
               "answers": answers, "scene": [[{k: o[k] for k in SCENE_KEYS} for o in scene] for scene in scenes]}
        if self.canonical_captions:
            from gaussiantoken.data.shapes_text import caption_for

            out["caption_canonical"] = [caption_for(scene) for scene in scenes]
        if self.t2i_lattice:
            scenes, captions = self.lattice_scenes(part, chunk)
            out.update({f"t2i_{k}": v for k, v in self._encode(scenes, captions).items()}, t2i_caption=captions)
        return out

    def __getitem__(self, index: int) -> dict:
        if not 0 <= int(index) < self.length:
            raise IndexError(index)
        part, local = self.row_source(index)
        chunk, row = divmod(local, self.chunk_size)
        if self._cache is None or self._cache[0] != (part, chunk):
            self._cache = ((part, chunk), self._chunk(part, chunk))
        data = self._cache[1]
        return {k: data[k][row] for k in self.column_names}

    def probe_text(self, num: int = 2048) -> dict[str, list]:
        """Text columns of `num` rows drawn like the stream's (no rendering): for context-length checks."""
        scenes, captions, questions, answers = [], [], [], []
        chunk = 0
        while len(captions) < num:
            _, c, q, a = self.scenes(0, 10_000_000 + chunk)  # chunks the run itself never reaches
            captions += c
            questions += q
            answers += a
            chunk += 1
        return {"caption": captions[:num], "questions": questions[:num], "answers": answers[:num]}


def sequential_sampler_for(dataset):
    """A SequentialSampler when `dataset` reads a stream (its rows are already random), else None."""
    rows = getattr(dataset, "dataset", None)
    if isinstance(rows, ShapesCodeStream):
        return torch.utils.data.SequentialSampler(dataset)
    return None


class StreamState:
    """Writes / checks OUTPUT/checkpoint-N/stream_state.json (position = rows consumed by all ranks)."""

    def __init__(self, stream: ShapesCodeStream, rows_per_step: int):
        self.stream, self.rows_per_step = stream, int(rows_per_step)

    def record(self, global_step: int) -> dict:
        return {"position": int(global_step) * self.rows_per_step, "global_step": int(global_step),
                "rows_per_step": self.rows_per_step, **self.stream.identity()}

    def write(self, checkpoint_dir: str | os.PathLike, global_step: int) -> None:
        from gaussiantoken.runtime.files import atomic_write_text

        atomic_write_text(Path(checkpoint_dir) / STATE_FILE, json.dumps(self.record(global_step), indent=2))

    def check(self, checkpoint_dir: str | os.PathLike, global_step: int) -> None:
        """Raise ValueError when the checkpoint's stream differs from this run's (its position must follow)."""
        path = Path(checkpoint_dir) / STATE_FILE
        if not path.is_file():
            raise ValueError(f"{checkpoint_dir} has no {STATE_FILE}: it was not trained on the Shapes stream "
                             "(resume it with data.source=codes, or start a new output_dir)")
        saved, ours = json.loads(path.read_text()), self.record(global_step)
        diff = {k: (saved.get(k), v) for k, v in ours.items() if saved.get(k) != v}
        if diff:
            raise ValueError(f"{path}: the stream differs from this run's (saved, now): {diff}; resuming would not "
                             "continue the same data (use the same data/train settings or a new output_dir)")


def stream_callback(state: StreamState, resume_from: str | None):
    """A TrainerCallback that writes the stream state into every checkpoint and checks it on resume."""
    from transformers import TrainerCallback

    class _StreamCallback(TrainerCallback):
        def on_train_begin(self, args, trainer_state, control, **kwargs):
            if resume_from:
                state.check(resume_from, trainer_state.global_step)

        def on_save(self, args, trainer_state, control, **kwargs):
            if trainer_state.is_world_process_zero:
                step = trainer_state.global_step
                state.write(Path(args.output_dir) / f"checkpoint-{step}", step)

    return _StreamCallback()


__all__ = ["ShapesCodeStream", "StreamState", "sequential_sampler_for", "stream_callback", "STATE_FILE"]

"""Segment Anything models: build, load and save, with the architecture read from the checkpoint itself.

segment-anything's own ``build_sam`` calls ``torch.load`` without ``map_location`` (a GPU checkpoint fails on a
CPU machine) and needs the model type spelled out. Here a checkpoint is loaded with ``map_location`` and
``weights_only=True``, and its architecture is inferred from the tensor names and shapes:

* the original ViT SAMs (embedding width, depth, heads, global-attention blocks, input size), built with
  segment-anything, so the official vit_b/l/h files and small test models load the same way;
* the light family, built with Ultralytics' ``ultralytics.models.sam.build``: MobileSAM (a TinyViT encoder) and
  SAM 2 / SAM 2.1 (a Hiera encoder; its width and depth give the size, SAM 2.1's extra ``no_obj_embed_spatial``
  the version), as Meta's files, the MobileSAM file and Ultralytics' copies of them hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from animeseg.errors import AnimesegError, MissingWeightsError

SAM_HINT = "get one with `animeseg weights download sam_vit_b` or pass --sam-checkpoint PATH"


@dataclass(frozen=True)
class SamConfig:
    """Image-encoder architecture of a SAM model (prompt encoder and mask decoder are the same for all)."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    img_size: int = 1024
    window_size: int = 14

    @property
    def name(self) -> str:
        """``vit_b``/``vit_l``/``vit_h`` for the official architectures, else a descriptive name."""
        for name, cfg in OFFICIAL.items():
            if cfg == self:
                return name
        return f"custom(dim={self.embed_dim},depth={self.depth},heads={self.num_heads},img={self.img_size})"


OFFICIAL: dict[str, SamConfig] = {
    "vit_b": SamConfig(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamConfig(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamConfig(1280, 32, 16, (7, 15, 23, 31)),
}

#: The light family: ``--sam-type`` name -> its builder in ``ultralytics.models.sam.build``.
LIGHT: dict[str, str] = {
    "mobile_sam": "build_mobile_sam",
    **{f"{v}_{s}": f"build_sam2_{s}" for v in ("sam2", "sam2.1") for s in ("t", "s", "b", "l")},
}

#: Every ``--sam-type``: ``auto`` (read from the checkpoint), the ViT SAMs and the light family.
SAM_TYPES: tuple[str, ...] = ("auto", *OFFICIAL, *LIGHT)

#: Hiera (SAM 2 image encoder) width and block count -> size letter.
_HIERA_SIZES = {(96, 12): "t", (96, 16): "s", (112, 24): "b", (144, 48): "l"}

#: A SAM small enough for tests and demos on a CPU (random weights only; it segments nothing useful).
TINY = SamConfig(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), img_size=256, window_size=4)


def check_sam_source(path: str | Path | None) -> Path:
    """The one check of a SAM source given by a user, before anything is loaded: a checkpoint file, or a folder
    exported by ``animeseg export onnx`` (it holds ``sam.json``). One-line errors name the path and the fix."""
    if path is None:
        raise AnimesegError(
            "--refine sam needs a SAM checkpoint: pass --sam-checkpoint PATH or get one with "
            "`animeseg weights download sam_vit_b` (--refine grabcut needs no weights)"
        )
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / "sam.json").is_file():
            raise AnimesegError(f"{path}: a folder, but not an exported SAM (no sam.json in it)")
        return path
    if not path.is_file():
        raise MissingWeightsError(path, SAM_HINT)
    from animeseg.io import torch_file_problem

    problem = torch_file_problem(path)
    if problem is not None:
        raise AnimesegError(f"{path}: not a SAM checkpoint: {problem}")
    return path


def sam_types() -> tuple[str, ...]:
    """Accepted ``--sam-type`` values: ``auto`` (read from the checkpoint) and every known architecture."""
    return SAM_TYPES


def build_sam(config: SamConfig | str) -> Any:
    """A randomly initialised ``segment_anything.modeling.Sam`` in eval mode for ``config`` (or a type name)."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    if isinstance(config, str):
        if config not in OFFICIAL:
            raise AnimesegError(f"unknown SAM type {config!r}; choose one of {', '.join(OFFICIAL)}")
        config = OFFICIAL[config]
    prompt_dim, patch = 256, 16
    grid = config.img_size // patch
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=config.depth,
            embed_dim=config.embed_dim,
            img_size=config.img_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=config.num_heads,
            patch_size=patch,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=list(config.global_attn_indexes),
            window_size=config.window_size,
            out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(config.img_size, config.img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=2048, num_heads=8),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def config_from_state_dict(state: dict[str, Any]) -> SamConfig:
    """Infer the image-encoder architecture from a SAM state dict's tensor shapes.

    ``pos_embed`` is (1, S/16, S/16, D); each block's ``rel_pos_h`` is (2w - 1, D / heads), where w is the
    window size for windowed blocks and S/16 for global-attention ones.
    """
    try:
        pos = state["image_encoder.pos_embed"]
        grid, dim = int(pos.shape[1]), int(pos.shape[3])
        blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))})
        rel = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"] for i in blocks]
    except (KeyError, IndexError, AttributeError) as e:
        raise AnimesegError(f"not a Segment Anything checkpoint (missing {e})") from None
    head_dim = int(rel[0].shape[1])
    global_idx = tuple(i for i, r in zip(blocks, rel, strict=True) if (int(r.shape[0]) + 1) // 2 == grid)
    windowed = [int(r.shape[0]) for i, r in zip(blocks, rel, strict=True) if i not in global_idx]
    window = (windowed[0] + 1) // 2 if windowed else 14
    return SamConfig(dim, len(blocks), dim // head_dim, global_idx, img_size=grid * 16, window_size=window)


def sam_type_of(state: dict[str, Any]) -> str:
    """The architecture of a SAM state dict: a :data:`LIGHT` name, ``vit_b``/``vit_l``/``vit_h``, or
    ``custom(...)`` for another ViT SAM (see :meth:`SamConfig.name`)."""
    if "image_encoder.trunk.patch_embed.proj.weight" in state:
        width = int(state["image_encoder.trunk.patch_embed.proj.weight"].shape[0])
        depth = len({int(m.group(1)) for k in state if (m := re.match(r"image_encoder\.trunk\.blocks\.(\d+)\.", k))})
        size = _HIERA_SIZES.get((width, depth))
        if size is None:
            raise AnimesegError(f"a SAM 2 checkpoint of no known size (Hiera width {width}, {depth} blocks)")
        return f"{'sam2.1' if 'no_obj_embed_spatial' in state else 'sam2'}_{size}"
    if "image_encoder.patch_embed.seq.0.c.weight" in state:
        return "mobile_sam"
    return config_from_state_dict(state).name


def build_light(sam_type: str) -> Any:
    """A randomly initialised light SAM (:data:`LIGHT`) in eval mode, built by ``ultralytics.models.sam.build``:
    an Ultralytics ``SAMModel`` (MobileSAM) or ``SAM2Model``."""
    from animeseg._offline import import_ultralytics

    import_ultralytics()
    from ultralytics.models.sam import build

    if sam_type not in LIGHT:
        raise AnimesegError(f"unknown light SAM type {sam_type!r}; choose one of {', '.join(LIGHT)}")
    builder = getattr(build, LIGHT[sam_type])
    if not sam_type.startswith("sam2.1"):
        return builder().eval()
    # Ultralytics tells SAM 2.1 from SAM 2 only by "sam2.1" in the checkpoint's file name, and then loads that
    # file itself (pickle, possibly a download); we load the weights ourselves, so its loader is skipped here.
    loader = build._load_checkpoint
    build._load_checkpoint = lambda model, checkpoint: model
    try:
        return builder("sam2.1").eval()
    finally:
        build._load_checkpoint = loader


def load_sam(checkpoint: str | Path, model_type: str = "auto", device: str = "cpu") -> Any:
    """Load a SAM checkpoint (a state dict, or ``{"model": state_dict}``) onto ``device``.

    ``model_type`` ``auto`` infers the architecture; an explicit one (:data:`SAM_TYPES`) is checked against the
    checkpoint so a mismatch is one clear line rather than a wall of shape errors. ViT SAMs come back as a
    ``segment_anything.modeling.Sam``, the light family as an Ultralytics model; ``sam_type`` on the returned
    module names the architecture either way.
    """
    import torch

    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise MissingWeightsError(path, SAM_HINT)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise AnimesegError(f"{path}: cannot read SAM checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise AnimesegError(f"{path}: not a Segment Anything checkpoint (holds a {type(state).__name__})")
    try:
        found = sam_type_of(state)
    except AnimesegError as e:
        raise AnimesegError(f"{path}: {e}") from None
    if model_type not in ("auto", found):
        raise AnimesegError(f"{path}: --sam-type {model_type} does not match the checkpoint, which is {found}")
    sam = build_light(found) if found in LIGHT else build_sam(config_from_state_dict(state))
    try:
        sam.load_state_dict(state)
    except RuntimeError as e:
        raise AnimesegError(f"{path}: checkpoint does not fit {found} ({str(e).splitlines()[0]})") from None
    sam.sam_type = found
    return sam.to(device).eval()


def save_sam(sam: Any, path: str | Path) -> Path:
    """Save a SAM model's state dict atomically (the format of the official checkpoints)."""
    import torch

    from animeseg.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(sam.state_dict(), tmp)
    return Path(path)

"""One contrastive backward pass, optionally split into micro-batches.

Plain gradient accumulation (sum of per-micro-batch losses) is wrong for a contrastive loss: each
micro-batch would only see its own negatives, so 4 x 64 would train like batch 64, not 256. This is
gradient caching instead (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under
Memory Limited Setup"): embed every micro-batch without a graph, take the loss over the whole batch
and its gradient with respect to the embeddings, then re-run each micro-batch with a graph and push
those gradients through it. The result equals the one-big-batch gradient (up to float rounding) at
the memory of one micro-batch and the cost of one extra forward. Each re-run restores the random
state of its first run, so dropout draws the same masks both times.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from pixseek.embedding.runtime import autocast
from pixseek.training.data import ImageInput, Pooled, TextInput
from pixseek.training.loss import clip_loss

Chunk = tuple[ImageInput, TextInput]


def _embed(model: Any, images: ImageInput, texts: TextInput) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected features, as ``get_image_features``/``get_text_features`` give them; a locked
    tower's precomputed output only goes through its projection."""
    if isinstance(images, Pooled):
        image_features = model.visual_projection(images.features)
    else:
        image_features = model.get_image_features(pixel_values=images).pooler_output
    if isinstance(texts, Pooled):
        text_features = model.text_projection(texts.features)
    else:
        text_features = model.get_text_features(**texts).pooler_output
    return image_features, text_features


class _RandomState:
    """The CPU and (when used) CUDA generator states, to replay dropout exactly."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        devices = [self.device] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


def contrastive_backward(
    model: Any,
    chunks: Sequence[Chunk],
    *,
    precision: str = "fp32",
    scale_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """Accumulate into ``.grad`` the gradient of the CLIP loss over all ``chunks`` as one batch,
    scaled by ``scale_loss`` (a GradScaler's ``scale`` under fp16); return the unscaled loss."""
    scale = scale_loss or (lambda loss: loss)
    device = model.logit_scale.device
    if len(chunks) == 1:
        pixels, tokens = chunks[0]
        with autocast(precision, device):
            image_features, text_features = _embed(model, pixels, tokens)
        loss = clip_loss(image_features, text_features, model.logit_scale)
        scale(loss).backward()
        return float(loss.detach())

    states: list[_RandomState] = []
    images: list[torch.Tensor] = []
    texts: list[torch.Tensor] = []
    with torch.no_grad():
        for pixels, tokens in chunks:
            states.append(_RandomState(device))
            with autocast(precision, device):
                chunk_images, chunk_texts = _embed(model, pixels, tokens)
            images.append(chunk_images.float())
            texts.append(chunk_texts.float())
    all_images = torch.cat(images).requires_grad_()
    all_texts = torch.cat(texts).requires_grad_()
    loss = clip_loss(all_images, all_texts, model.logit_scale)
    scale(loss).backward()  # gradient of the temperature, and of the embeddings
    sizes = [len(chunk_images) for chunk_images, _ in chunks]
    assert all_images.grad is not None and all_texts.grad is not None  # set by the backward above
    image_grads = all_images.grad.split(sizes)
    text_grads = all_texts.grad.split(sizes)
    for (pixels, tokens), state, image_grad, text_grad in zip(
        chunks, states, image_grads, text_grads, strict=True
    ):
        with state.replay(), autocast(precision, device):
            chunk_images, chunk_texts = _embed(model, pixels, tokens)
        surrogate = sum(
            (embedding.float() * grad).sum()
            for embedding, grad in ((chunk_images, image_grad), (chunk_texts, text_grad))
            if embedding.requires_grad
        )
        if torch.is_tensor(surrogate):
            surrogate.backward()
    return float(loss.detach())

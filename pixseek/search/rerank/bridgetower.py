"""BridgeTower ITM (``BridgeTowerForImageAndTextRetrieval``) split at its cross-modal encoder.

BridgeTower runs a text tower and a vision tower side by side; from layer ``split`` on, each
uni-modal layer's output is bridged into one cross-modal layer. The vision side of every bridge
(ln_post, image transform, token-type embedding, and for the first layer the cross-modal layer
norm) does not depend on the text, so ``image_features`` returns those per-layer inputs:
(cross-modal layers, image tokens, hidden), 3.0 MB per image in float16 for bridgetower-base.
``score_features`` runs the text tower once per query, then the cross-modal layers and the ITM
head for the whole batch. It mirrors ``BridgeTowerModel.forward`` in transformers 5.x step for step;
the parity tests compare it with the documented per-pair usage.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers.masking_utils import create_bidirectional_mask

from pixseek.embedding.runtime import precision_context
from pixseek.search.rerank.base import Reranker

IMAGE_TOKEN_TYPE = 1  # BridgeTowerModel.forward's default image_token_type_idx
TEXT_TOKEN_TYPE = 0


class BridgeTowerReranker(Reranker):
    name = "bridgetower"

    def __init__(self, model, processor, model_id, device, precision):
        bridgetower = model.bridgetower
        config = model.config
        vision = config.vision_config
        self.text_layers = len(bridgetower.text_model.encoder.layer)
        # The first `split` uni-modal layers run before the cross-modal encoder starts.
        self.split = self.text_layers - config.num_hidden_layers + 1
        tokens = (vision.image_size // vision.patch_size) ** 2 + 1
        self.feature_shape = (config.num_hidden_layers, tokens, config.hidden_size)
        tokenizer = processor.tokenizer
        # RoBERTa position ids start after the padding index: two positions fewer than the table.
        self.max_text_tokens = min(
            int(tokenizer.model_max_length), int(config.text_config.max_position_embeddings) - 2
        )
        super().__init__(model, processor, model_id, device, precision)

    def _token_type(self, index: int, like: torch.Tensor) -> torch.Tensor:
        ids = torch.full((1,), index, dtype=torch.long, device=self.device)
        return self.model.bridgetower.token_type_embeddings(ids).expand_as(like)

    def image_features(self, pixel_values: np.ndarray) -> np.ndarray:
        bt = self.model.bridgetower
        visual = bt.vision_model.visual
        dtype = bt.vision_model.dtype
        with precision_context(self.precision, self.device):
            hidden = visual.forward_pre(self._tensor(pixel_values).type(dtype))  # (tokens, B, hidden)
            for block in visual.transformer.resblocks[: self.split]:
                hidden = block(hidden)
            first = bt._apply_image_transform(visual.forward_post(hidden.type(dtype)), layer_idx=0)
            image_type = self._token_type(IMAGE_TOKEN_TYPE, first)
            layers = [bt.cross_modal_image_layernorm(first + image_type)]
            for link, index in enumerate(range(self.split, self.text_layers), start=1):
                hidden = visual.transformer.resblocks[index](hidden).type(dtype)
                layers.append(bt._apply_image_transform(visual.forward_post(hidden), link) + image_type)
            features = torch.stack(layers, dim=1)
        return self._stored(features)

    def score_features(self, text: str, features: np.ndarray) -> np.ndarray:
        bt = self.model.bridgetower
        tokens = self.processor.tokenizer(
            text, truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
        ).to(self.device)
        batch = len(features)
        with precision_context(self.precision, self.device):
            image_layers = self._tensor(features)
            # Text tower: once per query, then shared by every image of the batch.
            hidden = bt.text_model.embeddings(input_ids=tokens["input_ids"])
            mask = create_bidirectional_mask(
                config=bt.config, inputs_embeds=hidden[:, 0:1, :], attention_mask=tokens["attention_mask"]
            )
            for layer in bt.text_model.encoder.layer[: self.split]:
                hidden = layer(hidden, mask)
            first = bt._apply_text_transform(hidden, 0)
            text_type = self._token_type(TEXT_TOKEN_TYPE, first)
            text_layers = [bt.cross_modal_text_layernorm(first + text_type)]
            for link, index in enumerate(range(self.split, self.text_layers), start=1):
                hidden = bt.text_model.encoder.layer[index](hidden, mask)
                text_layers.append(bt._apply_text_transform(hidden, link) + text_type)
            text_layers = [layer.expand(batch, -1, -1) for layer in text_layers]
            if mask is not None:
                mask = mask.expand(batch, *mask.shape[1:])

            def cross(link: int, text_in: torch.Tensor, image_in: torch.Tensor) -> tuple[torch.Tensor, ...]:
                text_out = bt.cross_modal_text_layers[link](text_in, image_in, attention_mask=mask)[0]
                image_out = bt.cross_modal_image_layers[link](image_in, text_in, encoder_attention_mask=mask)
                return text_out, image_out[0]

            # Cross-modal encoder: layer 0 takes the bridged inputs as they are; later layers get them
            # added to the previous layer's output by the link towers.
            text_out, image_out = cross(0, text_layers[0], image_layers[:, 0])
            for link in range(1, len(text_layers)):
                text_out, image_out = cross(
                    link,
                    bt.cross_modal_text_link_tower[link - 1](text_layers[link], text_out, mask),
                    bt.cross_modal_image_link_tower[link - 1](image_layers[:, link], image_out, None),
                )
            logits = self.model.itm_score(bt.get_cls_features(text_out, image_out))
        return torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()

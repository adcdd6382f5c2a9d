"""BLIP-2 ITM (``Blip2ForImageTextRetrieval`` with ``use_image_text_matching_head=True``), split after
the vision tower.

The ViT-g output (257 x 1408 for 224 px; 0.72 MB per image in float16) does not depend on the text
and is what ``image_features`` returns; the Q-Former cannot be cached because its query tokens and
the text attend to each other. ``score_features`` runs the Q-Former and the ITM head for one query
against a batch of images, as ``Blip2ForImageTextRetrieval.forward`` does (transformers 5.x).

The ``<image>``-token pitfall does not arise here: ``Blip2Processor`` prepends ``num_query_tokens``
``<image>`` tokens to a text processed together with images, and the model strips that many leading
tokens when its config has ``image_token_index``. This class tokenises the text alone and feeds the
Q-Former itself (query tokens + text, attention mask with the queries in front), which is what the
model computes after stripping, for old configs without ``image_token_index`` as well.
"""

from __future__ import annotations

import numpy as np
import torch

from pixseek.embedding.runtime import precision_context
from pixseek.search.rerank.base import Reranker


class Blip2Reranker(Reranker):
    name = "blip2"

    def __init__(self, model, processor, model_id, device, precision):
        config = model.config
        vision = config.vision_config
        tokens = (vision.image_size // vision.patch_size) ** 2 + 1
        self.feature_shape = (tokens, vision.hidden_size)
        self.num_query_tokens = int(config.num_query_tokens)
        self.max_text_tokens = min(
            int(processor.tokenizer.model_max_length), int(config.qformer_config.max_position_embeddings)
        )
        super().__init__(model, processor, model_id, device, precision)

    def image_features(self, pixel_values: np.ndarray) -> np.ndarray:
        with precision_context(self.precision, self.device):
            features = self.model.vision_model(pixel_values=self._tensor(pixel_values)).last_hidden_state
        return self._stored(features)

    def score_features(self, text: str, features: np.ndarray) -> np.ndarray:
        model = self.model
        tokens = self.processor.tokenizer(
            text,
            truncation=True,
            max_length=self.max_text_tokens,
            return_token_type_ids=False,
            return_tensors="pt",
        ).to(self.device)
        batch = len(features)
        queries = self.num_query_tokens
        with precision_context(self.precision, self.device):
            image_embeds = self._tensor(features)
            # Query tokens + text embeddings are the same for every image: build them once.
            embeds = model.embeddings(input_ids=tokens["input_ids"], query_embeds=model.query_tokens)
            attention = torch.cat(
                [torch.ones(1, queries, dtype=torch.long, device=self.device), tokens["attention_mask"]],
                dim=1,
            )
            output = model.qformer(
                query_embeds=embeds.expand(batch, -1, -1),
                query_length=queries,
                attention_mask=attention.expand(batch, -1),
                encoder_hidden_states=image_embeds,
                encoder_attention_mask=torch.ones(
                    image_embeds.shape[:-1], dtype=torch.long, device=self.device
                ),
            ).last_hidden_state
            logits = model.itm_head(output[:, :queries, :].to(model.itm_head.weight.dtype)).mean(dim=1)
        return torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()

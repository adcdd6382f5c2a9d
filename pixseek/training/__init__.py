"""Contrastive fine-tuning of VisionTextDualEncoder models (``pixseek train``)."""

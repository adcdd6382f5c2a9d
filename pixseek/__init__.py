"""pixseek: semantic image search over photo folders with CLIP-family dual encoders and FAISS."""

__version__ = "0.1.0"

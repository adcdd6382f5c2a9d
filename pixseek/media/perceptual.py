"""A 64-bit perceptual hash of a picture (pHash), and the Hamming distance between two of them.

Duplicate finding (:mod:`pixseek.service.duplicates`) uses it as the second check on the pairs the
embedding search proposes: a model that has learnt *what* a picture shows puts two photos of the
same scene as close as a photo and its resized copy, while the hash compares the picture's own
layout of light and dark.

pHash, not dHash: the brightness of the picture shrunk to 32x32 grey, its 8x8 lowest spatial
frequencies (a DCT), one bit per frequency: above their median or not. On the labelled set of
docs/search.md ("Duplicates") a recompressed or re-exposed copy of a picture with plain areas (a
studio background, a sky, the generated shapes) differed from its original in a median 0 bits of
pHash against 7 and 11 of dHash, whose bits compare neighbouring pixels and flip with noise where
there is no edge; on photos both hold. Frequencies rather than pixels also make the hash blind to
a brightness or contrast change (a shift moves only the mean, a scale every frequency alike). A
crop of 5-8% still moves 10-16 bits: crops are the copies most often missed.

Cheap: 0.4 ms on the draft-decoded image the indexer already holds, 1.5% of decoding a 12 MP
JPEG (docs/benchmarks.md, "Duplicates at scale"). No dependency: the DCT of 32 values to 8 is one
8x32 matrix.

Stored as a signed 64-bit integer (SQL's BIGINT); :func:`hamming` takes either sign.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_BITS = 64
_SIDE, _KEPT = 32, 8
# The shorter side a file is decoded at when only its hash is needed (pixseek duplicates, for rows
# indexed before the hash was stored): twice the 32 samples a side. The indexer hashes the image it
# decoded for the model (224 for CLIP; a model with a smaller input gets a JPEG drafted smaller).
HASH_MIN_SIDE = 64
# DCT-II basis (orthonormal), the 8 lowest frequencies of 32 samples: one row per frequency.
_DCT = np.sqrt(2 / _SIDE) * np.cos(
    np.pi * np.arange(_KEPT)[:, None] * (2 * np.arange(_SIDE)[None, :] + 1) / (2 * _SIDE)
)
_DCT[0] /= np.sqrt(2)


def perceptual_hash(image: Image.Image) -> int:
    """pHash of an upright image (decode it with :func:`pixseek.media.decode.decode_image`, which
    applies the EXIF orientation), as a signed 64-bit integer. Box averaging makes the hash of a
    draft-decoded JPEG (1/2 to 1/8 scale) that of the full decode, give or take a bit."""
    grey = np.asarray(image.convert("L").resize((_SIDE, _SIDE), Image.Resampling.BOX), dtype=np.float64)
    low = (_DCT @ grey @ _DCT.T).ravel()
    bits = low > np.median(low)
    return int(np.packbits(bits).view(">i8")[0])


def hamming(first: int | np.ndarray, second: int | np.ndarray) -> np.ndarray:
    """Bits that differ between hashes (elementwise for arrays of signed 64-bit hashes). Counted on
    the unsigned view: numpy's bitwise_count of a negative integer counts its absolute value."""
    differ = np.bitwise_xor(np.asarray(first, np.int64), np.asarray(second, np.int64))
    return np.bitwise_count(differ.view(np.uint64))

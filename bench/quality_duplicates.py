"""Quality of duplicate grouping: pairwise precision and recall of the groups on a labelled set.

The set is :mod:`pixseek.testing.near_duplicates` (scikit-image photos and generated shapes, five
copies of each: resized, recompressed, cropped 5-8%, re-exposed, EXIF-rotated; plus look-alikes
that must stay apart: another drawing of the same shapes scene, the stereo pair's other camera, a
reframed shot). It is indexed with ``--model`` (a model that has learnt something: the shapes
model ``pixseek train`` builds, docs/search.md), then grouped by each rule:

* **cosine alone**: the production k-NN candidates (k=16, widened while saturated) at cosine >= T,
  joined by union-find (``pixseek duplicates --max-distance 64``);
* **hash alone**: every pair of images (all pairs: the set is small) whose pHashes differ in at most
  D bits, joined the same way; what a tool without embeddings would do;
* **both**: the k-NN candidates at cosine >= T whose hashes differ in at most D bits (the default).

A pair of images counts as predicted when both land in one group, as true when both are copies of
one original (or the original and a copy); precision and recall are over those pairs. Also per
transformation: the share of copies grouped with their original; and the look-alikes pulled into
another group; and the bits each kind of copy differs from its original in, for pHash and for dHash
(why pHash). Finally ``Library.duplicates`` runs at the defaults, as ``pixseek duplicates`` does,
and its groups are scored the same way (a check that this script measures the shipped code).

    HF_HUB_OFFLINE=1 python bench/quality_duplicates.py --model /work/models/shapes-model
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import itertools
import json
import shutil
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from common import DEFAULT_WORK_DIR, log, machine_info, uptime
from pixseek.config import DUPLICATE_MAX_DISTANCE, DUPLICATE_THRESHOLD, Settings
from pixseek.library import Library
from pixseek.media.decode import decode_image
from pixseek.media.perceptual import hamming, perceptual_hash
from pixseek.search.duplicates import UnionFind, near_pairs
from pixseek.store.self_join import neighbour_search
from pixseek.testing.near_duplicates import LOOK_ALIKE, ORIGINAL, TRANSFORMS, generate, read_labels

THRESHOLDS = (0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)
DISTANCES = (4, 6, 8, 10, 12, 14, 16, 18, 20, 24)


def scores(groups: list[list[str]], labels: dict[str, tuple[str, str]]) -> dict:
    """Pairwise precision/recall of ``groups`` (lists of file names) against the labels."""
    group_of = {name: number for number, members in enumerate(groups) for name in members}
    predicted = {frozenset(pair) for members in groups for pair in itertools.combinations(members, 2)}
    by_truth: dict[str, list[str]] = defaultdict(list)
    for name, (group, _) in labels.items():
        by_truth[group].append(name)
    true = {frozenset(pair) for members in by_truth.values() for pair in itertools.combinations(members, 2)}
    hit = len(predicted & true)
    per_kind = {}
    for kind in TRANSFORMS:
        copies = [(name, group) for name, (group, k) in labels.items() if k == kind]
        originals = {group: name for name, (group, k) in labels.items() if k == ORIGINAL}
        joined = sum(
            1
            for name, group in copies
            if name in group_of and group_of[name] == group_of.get(originals[group], -1)
        )
        per_kind[kind] = joined / len(copies)
    look_alikes = [name for name, (_, kind) in labels.items() if kind == LOOK_ALIKE]
    return {
        "precision": hit / len(predicted) if predicted else 1.0,
        "recall": hit / len(true),
        "f1": 2 * hit / (len(predicted) + len(true)),
        "groups": len(groups),
        "look_alikes_grouped": sum(name in group_of for name in look_alikes),
        "recall_by_copy": per_kind,
    }


def evaluate(groups: list[list[str]], labels: dict[str, tuple[str, str]]) -> dict:
    """:func:`scores` over the whole set, and on the photos and on the shapes apart."""
    result = scores(groups, labels)
    for domain in ("photos", "shapes"):
        chosen = {
            name: label
            for name, label in labels.items()
            if label[0].startswith("shape") == (domain == "shapes")
        }
        kept = [[name for name in members if name in chosen] for members in groups]
        result[domain] = scores([members for members in kept if len(members) > 1], chosen)
    return result


def joined(pairs: list[tuple[int, int]], names: dict[int, str]) -> list[list[str]]:
    union = UnionFind()
    for first, second in pairs:
        union.union(first, second)
    return [[names[i] for i in members] for members in union.groups()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="/work/models/shapes-model")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--shapes", type=int, default=40, help="generated shapes originals")
    args = parser.parse_args()

    folder = args.work_dir / "near-duplicates"
    if not (folder / "labels.jsonl").exists():
        log(f"generating the labelled set in {folder}")
        generate(folder, shapes=args.shapes)
    labels = {label.image: (label.group, label.kind) for label in read_labels(folder)}
    data_dir = args.work_dir / "quality-duplicates"
    shutil.rmtree(data_dir, ignore_errors=True)  # a fresh collection: the model may have been retrained
    settings = Settings(data_dir=data_dir, model=args.model, device="cpu", precision="fp32", batch_size=64)
    report: dict = {"machine": machine_info(), "load": uptime(), "model": args.model, "images": len(labels)}
    with Library(settings) as library:
        encoder = library.load_encoder()
        log(f"indexing {len(labels)} images with {args.model}")
        library.indexer(encoder).run([folder])
        library.finish_vectors(library.collection())
        collection = library.collection()
        report["fingerprint"] = collection.model_fingerprint
        vectors = library.vectors(collection)
        store = library.store
        rows = store.images(store.indexed_ids(collection.id).tolist())
        names = {image_id: Path(row.path).name for image_id, row in rows.items()}
        ids = np.array(sorted(names), dtype=np.int64)
        stored = store.perceptual_hashes(ids.tolist())
        hashes = np.array([stored[i] for i in ids.tolist()], dtype=np.int64)
        position = {image_id: i for i, image_id in enumerate(ids.tolist())}

        rules: list[dict] = []
        search = neighbour_search(vectors)
        for threshold in THRESHOLDS:
            pairs = near_pairs(store.iter_embeddings(collection.id, collection.dim), search, threshold)
            first = hashes[[position[i] for i in pairs.first.tolist()]]
            second = hashes[[position[i] for i in pairs.second.tolist()]]
            distance = hamming(first, second)
            candidates = list(zip(pairs.first.tolist(), pairs.second.tolist(), strict=True))
            rules.append(
                {"rule": "cosine", "threshold": threshold, **evaluate(joined(candidates, names), labels)}
            )
            for bits in DISTANCES:
                kept = [pair for pair, d in zip(candidates, distance.tolist(), strict=True) if d <= bits]
                row = {"rule": "both", "threshold": threshold, "max_distance": bits}
                rules.append({**row, **evaluate(joined(kept, names), labels)})
        all_distances = hamming(hashes[:, None], hashes[None, :])
        for bits in DISTANCES:
            a, b = np.nonzero(np.triu(all_distances <= bits, 1))
            pairs_all = list(zip(ids[a].tolist(), ids[b].tolist(), strict=True))
            rules.append({"rule": "hash", "max_distance": bits, **evaluate(joined(pairs_all, names), labels)})
        report["rules"] = rules
        report["hash_distances"] = hash_distances(folder, labels)

        started = time.perf_counter()
        shipped = library.duplicates()
        groups = [[Path(member.path).name for member in group.members] for group in shipped.groups]
        report["shipped"] = {
            "threshold": DUPLICATE_THRESHOLD,
            "max_distance": DUPLICATE_MAX_DISTANCE,
            "seconds": time.perf_counter() - started,
            **evaluate(groups, labels),
        }
    print_report(report)


def difference_hash(image: Image.Image) -> int:
    """dHash, the hash this set was first measured with: 9x8 grey, one bit per pair of neighbours."""
    grey = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    return int(np.packbits((grey[:, 1:] > grey[:, :-1]).ravel()).view(">i8")[0])


def hash_distances(folder: Path, labels: dict[str, tuple[str, str]]) -> dict:
    """Median and 90th percentile of the bits in which each kind of copy (and the look-alikes)
    differs from its original, per hash and per domain: why pHash and not dHash."""
    images = {name: decode_image((folder / name).read_bytes(), min_side=224).image for name in labels}
    originals = {group: name for name, (group, kind) in labels.items() if kind == ORIGINAL}
    result: dict = {}
    for hash_name, function in (("pHash", perceptual_hash), ("dHash", difference_hash)):
        hashes = {name: function(image) for name, image in images.items()}
        for domain in ("photos", "shapes"):
            by_kind: dict[str, list[int]] = defaultdict(list)
            for name, (group, kind) in labels.items():
                if group.startswith("shape") != (domain == "shapes") or kind == ORIGINAL:
                    continue
                if kind == LOOK_ALIKE:
                    source = group.removesuffix("-redrawn").removesuffix("-reframed")
                    group, kind = ("motorcycle_left" if source == "motorcycle_right" else source), LOOK_ALIKE
                by_kind[kind].append(int(hamming(hashes[name], hashes[originals[group]])))
            result[f"{hash_name} {domain}"] = {
                kind: (int(np.median(d)), int(np.percentile(d, 90))) for kind, d in by_kind.items()
            }
    return result


def print_report(report: dict) -> None:
    print(f"model {report['model']} (fingerprint {report['fingerprint']}), {report['images']} images")
    print(f"machine: {report['machine']['cpu']}, load {report['load']}")
    print()
    kinds = list(TRANSFORMS)
    print("| rule | cosine >= | distance <= | precision | recall | look-alikes grouped | photos P / R | "
          "shapes P / R | " + " | ".join(kinds) + " |")  # fmt: skip
    print("|" + " --- |" * (8 + len(kinds)))
    for row in report["rules"]:
        print(_row(row, kinds))
    shipped = report["shipped"]
    print()
    print(
        f"pixseek duplicates at the defaults (cosine >= {shipped['threshold']}, distance <= "
        f"{shipped['max_distance']}, {shipped['seconds']:.2f} s):"
    )
    print(_row({"rule": "shipped", **shipped}, kinds))
    print("\nBits a copy differs from its original in (median / 90th percentile):\n")
    kinds_and_look_alikes = [*kinds, LOOK_ALIKE]
    print("| hash, originals | " + " | ".join(kinds_and_look_alikes) + " |")
    print("|" + " --- |" * (1 + len(kinds_and_look_alikes)))
    for name, by_kind in report["hash_distances"].items():
        cells = " | ".join(f"{by_kind[kind][0]} / {by_kind[kind][1]}" for kind in kinds_and_look_alikes)
        print(f"| {name} | {cells} |")
    print(json.dumps(report, default=str))


def _row(row: dict, kinds: list[str]) -> str:
    by_kind = " | ".join(f"{row['recall_by_copy'][kind]:.2f}" for kind in kinds)
    photos, shapes = row["photos"], row["shapes"]
    return (
        f"| {row['rule']} | {row.get('threshold', '')} | {row.get('max_distance', '')} | "
        f"{row['precision']:.3f} | {row['recall']:.3f} | {row['look_alikes_grouped']} | "
        f"{photos['precision']:.2f} / {photos['recall']:.2f} | {shapes['precision']:.2f} / "
        f"{shapes['recall']:.2f} | {by_kind} |"
    )


if __name__ == "__main__":
    main()

"""IVF-PQ re-ranking: candidates from the compressed index are re-scored exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from synesthesia.index import IndexManager, UpsertItem

DIM = 32


def _recall(tmp: Path, rerank: int, vecs: np.ndarray, queries: np.ndarray) -> tuple[float, float]:
    with IndexManager(tmp / f"r{rerank}") as mgr:
        mgr.create_collection(
            "c",
            DIM,
            kind="ivf-pq",
            params={
                "nlist": 16,
                "m": 4,
                "nbits": 6,
                "nprobe": 4,
                "train_min": 1000,
                "rerank": rerank,
            },
        )
        coll = mgr.collection("c")
        coll.upsert([UpsertItem(str(i), v, "image") for i, v in enumerate(vecs)])
        assert coll.describe().trained
        hits_total, worst_score_error = 0, 0.0
        for q in queries:
            truth = set(np.argsort(-(vecs @ q))[:10].tolist())
            hits = coll.query(q, 10)
            hits_total += len(truth & {int(h.id) for h in hits})
            exact = np.array([vecs[int(h.id)] @ q for h in hits])
            worst_score_error = max(
                worst_score_error, float(np.abs(exact - [h.score for h in hits]).max())
            )
        return hits_total / (10 * len(queries)), worst_score_error


def test_rerank_raises_recall_and_returns_exact_scores(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((40, DIM))
    vecs = centers[rng.integers(0, 40, 3000)] + 0.3 * rng.standard_normal((3000, DIM))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    queries = vecs[rng.choice(3000, 40, replace=False)] + 0.05 * rng.standard_normal((40, DIM))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    plain, plain_err = _recall(tmp_path, 1, vecs, queries)
    reranked, err = _recall(tmp_path, 8, vecs, queries)
    assert err < 1e-5, "re-ranked scores must be exact inner products"
    assert plain_err > 1e-3, "without re-ranking the scores are PQ approximations"
    assert reranked >= plain + 0.1 and reranked >= 0.9, (plain, reranked)

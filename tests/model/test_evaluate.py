import json

import numpy as np

from lib.model.evaluate import evaluate, main
from lib.model.metrics import average_precision, retrieval_scores


def test_average_precision_by_hand():
    relevant = np.array([True, False, True, False])
    assert average_precision(np.array([0, 1, 2, 3]), relevant) == (1 + 2 / 3) / 2
    assert average_precision(np.array([2, 0, 1, 3]), relevant) == 1.0
    assert average_precision(np.array([1, 3, 0, 2]), relevant) == (1 / 3 + 2 / 4) / 2


def test_retrieval_scores_on_vectors():
    images = np.eye(3, dtype=np.float32)
    queries = np.array([[1, 0.1, 0], [0, 0, 1]], dtype=np.float32)
    relevant = np.array([[True, False, False], [False, True, False]])
    p_at_1, mean_ap = retrieval_scores(queries, images, relevant, k=1)
    assert p_at_1 == 0.5 and mean_ap == (1 + 1 / 3) / 2


def test_demo_model_is_far_above_chance(demo_encoder):
    scores = evaluate(demo_encoder, seed=2024, per_class=10)  # 10 per class: precision@10 can reach 1
    assert scores.zero_shot_top1 >= 0.7  # chance is 1/36
    assert scores.precision_at_10 >= 0.7  # chance is 1/36
    assert scores.attribute_precision_at_10 >= 0.6  # chance is 1/6


def test_cli_ends_with_a_json_line(capsys):
    main(["--model", "demo", "--seed", "3", "--per-class", "2"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last) >= {"zero_shot_top1", "zero_shot_top5", "precision_at_10", "map", "image_recall_at_10",
                         "attribute_precision_at_10"}

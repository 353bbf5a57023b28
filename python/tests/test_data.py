import itertools

import numpy as np

from dkt import data


def test_pad_batch_follows_the_model_contract():
    s = 5
    students = [data.Student(np.array([1, 3, 4], np.int32), np.array([1, 0, 1], np.int32)),
                data.Student(np.array([2], np.int32), np.array([0], np.int32))]
    p = data.pad_batch(students, s)
    assert p["max_steps"] == 3 and p["batch_size"] == 2
    assert p["sequence_len"].tolist() == [3, 1]
    # one-hot of skill + S*correct; padded steps all-zero
    assert np.argwhere(p["input_x"][0]).tolist() == [[0, 1 + s], [1, 3], [2, 4 + s]]
    assert np.argwhere(p["input_x"][1]).tolist() == [[0, 2]]
    assert p["input_x"][1, 1:].sum() == 0
    # target_id = skill of the next step, 0 at the last step and padding
    assert p["target_id"].tolist() == [[3, 4, 0], [0, 0, 0]]
    assert p["target_correct"].tolist() == [[0, 1, 0], [0, 0, 0]]
    assert p["mask"].tolist() == [[1, 1, 0], [0, 0, 0]]


def test_auc_matches_pairwise_definition():
    rng = np.random.RandomState(0)
    labels = rng.randint(0, 2, 300)
    scores = np.round(rng.rand(300), 2)  # rounding creates ties
    pairs = [(p, n) for p, n in itertools.product(scores[labels == 1], scores[labels == 0])]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert abs(data.auc(labels, scores) - expected) < 1e-12


def test_read_dkt3_counts_the_bundled_test_split(test_split):
    students = data.read_dkt3(test_split)
    assert len(students) == 856
    assert sum(len(s.skills) for s in students) == 117567

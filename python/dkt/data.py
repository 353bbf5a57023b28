"""Reading the DKT 3-line CSV and building the padded tensors of the model contract."""
from dataclasses import dataclass

import numpy as np


@dataclass
class Student:
    skills: np.ndarray  # int32 [n]
    correct: np.ndarray  # int32 [n], 0/1


def read_dkt3(path):
    """Reads the origin's 3-line format: n / n skill ids / n correctness flags."""
    with open(path) as f:
        lines = [line.strip() for line in f]
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) % 3:
        raise ValueError(f"{path}: {len(lines)} lines is not a multiple of 3; expected n / skills / correct per student")
    students = []
    for i in range(0, len(lines), 3):
        n = int(lines[i])
        skills = np.array([int(v) for v in lines[i + 1].split(",") if v != ""], dtype=np.int32)
        correct = np.array([int(v) for v in lines[i + 2].split(",") if v != ""], dtype=np.int32)
        if len(skills) != n or len(correct) != n:
            raise ValueError(f"{path}:{i + 1}: header says {n} interactions, found {len(skills)} skills and {len(correct)} flags")
        students.append(Student(skills, correct))
    return students


def pad_batch(students, num_skills):
    """Padded inputs exactly per the model contract.

    input_x[b, t] is the one-hot of skill + num_skills*correct for real steps and all-zero
    for padding; target_id[b, t] is the skill of step t+1 (0 at the last step and padding);
    target_correct[b, t] is its correctness (training only); mask marks steps with a target.
    """
    batch = len(students)
    steps = max(len(s.skills) for s in students)
    input_x = np.zeros((batch, steps, 2 * num_skills), dtype=np.float32)
    target_id = np.zeros((batch, steps), dtype=np.int32)
    target_correct = np.zeros((batch, steps), dtype=np.float32)
    mask = np.zeros((batch, steps), dtype=np.float32)
    seq_len = np.zeros(batch, dtype=np.int32)
    for b, s in enumerate(students):
        n = len(s.skills)
        seq_len[b] = n
        input_x[b, np.arange(n), s.skills + num_skills * s.correct] = 1.0
        target_id[b, : n - 1] = s.skills[1:]
        target_correct[b, : n - 1] = s.correct[1:]
        mask[b, : n - 1] = 1.0
    return dict(input_x=input_x, target_id=target_id, target_correct=target_correct,
                mask=mask, sequence_len=seq_len, max_steps=steps, batch_size=batch)


def length_batches(students, batch_size, max_padded_steps=None):
    """Groups students of similar length (sorted by length) so padding stays small."""
    order = sorted(range(len(students)), key=lambda i: len(students[i].skills))
    batch = []
    for i in order:
        n = len(students[i].skills)
        if batch and (len(batch) == batch_size or
                      (max_padded_steps and (len(batch) + 1) * n > max_padded_steps)):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def auc(labels, scores):
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties averaged."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    positives = labels.sum()
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs both correct and incorrect answers")
    return (ranks[labels == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives)

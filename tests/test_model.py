"""The network, the losses and the metrics."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from ser.losses import BinaryLoss, CategoricalLoss
from ser.metrics import TRIVIAL_BINARY_ACCURACY, StageMetrics
from ser.models.lstm import LSTMClassifier, reverse_within_length


@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, False), (1, True), (2, True)])
def test_padding_never_changes_a_clips_output(pooling, layers, bidirectional):
    torch.manual_seed(0)
    net = LSTMClassifier(
        8, hidden_size=16, dense_size=8, num_layers=layers, bidirectional=bidirectional, pooling=pooling
    ).eval()
    lengths = torch.tensor([30, 17, 5])
    clips = [torch.randn(n, 8) for n in lengths.tolist()]
    batch = torch.full((3, 40, 8), 123.0)  # garbage, not zeros, past each clip's end
    for i, c in enumerate(clips):
        batch[i, : len(c)] = c
    batched = net(batch, lengths)
    alone = torch.cat([net(c[None], torch.tensor([len(c)])) for c in clips])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_last_pooling_reads_the_last_valid_frame():
    torch.manual_seed(0)
    net = LSTMClassifier(4, hidden_size=6, pooling="last").eval()
    x = torch.randn(1, 10, 4)
    state = net.encode(x, torch.tensor([7]))
    out, _ = net.forward_layers[0](net.normalizer(x[:, :7]))
    torch.testing.assert_close(state, out[:, -1])


def test_reverse_within_length():
    x = torch.arange(8.0).reshape(2, 4, 1)
    out = reverse_within_length(x, torch.tensor([3, 4]))
    assert out[..., 0].tolist() == [[2, 1, 0, 3], [7, 6, 5, 4]]


def test_normalizer_stats_are_part_of_the_state_dict():
    net = LSTMClassifier(3)
    net.normalizer.set_stats(torch.tensor([1.0, 2, 3]), torch.tensor([2.0, 2, 2]))
    other = LSTMClassifier(3)
    other.load_state_dict(net.state_dict())
    assert other.normalizer.mean.tolist() == [1, 2, 3]


def test_bad_model_settings_are_named():
    with pytest.raises(ValueError, match="model.pooling"):
        LSTMClassifier(3, pooling="max")
    with pytest.raises(ValueError, match="model.num_layers"):
        LSTMClassifier(3, num_layers=0)


def test_categorical_loss_is_cross_entropy_and_probabilities_sum_to_one():
    logits, labels = torch.randn(5, 12), torch.tensor([0, 1, 2, 11, 6])
    loss = CategoricalLoss()
    torch.testing.assert_close(loss(logits, labels), F.cross_entropy(logits, labels))
    torch.testing.assert_close(loss.probabilities(logits).sum(-1), torch.ones(5))


def test_binary_loss_is_bce_on_one_hot_targets():
    logits, labels = torch.randn(5, 12), torch.tensor([0, 1, 2, 11, 6])
    loss = BinaryLoss()
    expected = F.binary_cross_entropy_with_logits(logits, F.one_hot(labels, 12).float())
    torch.testing.assert_close(loss(logits, labels), expected)
    assert ((loss.probabilities(logits) > 0) & (loss.probabilities(logits) < 1)).all()


def test_balanced_weights_follow_training_counts():
    counts = torch.tensor([10.0] * 11 + [1.0])
    ce = CategoricalLoss(class_weights="balanced")
    ce.set_class_counts(counts)
    assert ce.weight[11] > ce.weight[0] * 5
    bce = BinaryLoss(pos_weight="balanced")
    bce.set_class_counts(counts)
    assert bce.pos_weight[11] == pytest.approx(110.0) and bce.pos_weight[0] == pytest.approx(10.1)  # (111 - 10) / 10
    with pytest.raises(ValueError, match="loss.class_weights"):
        CategoricalLoss(class_weights=[1.0, 2.0])


def test_all_no_model_scores_eleven_twelfths_binary_accuracy_and_chance_uar():
    metrics = StageMetrics()
    labels = torch.arange(120) % 12
    metrics.update(torch.full((120, 12), 0.01), labels)  # says "no" (p < 0.5) to every class
    values = {k: float(v) for k, v in metrics.compute().items()}
    assert values["binary_accuracy"] == pytest.approx(TRIVIAL_BINARY_ACCURACY)
    assert values["uar"] == pytest.approx(1 / 12)


def test_uar_differs_from_accuracy_on_imbalanced_data():
    metrics = StageMetrics()
    labels = torch.tensor([0] * 90 + [1] * 10)
    probs = F.one_hot(torch.zeros(100, dtype=torch.long), 12).float()  # always class 0
    metrics.update(probs, labels)
    values = {k: float(v) for k, v in metrics.compute().items()}
    assert values["accuracy"] == pytest.approx(0.9)
    assert values["uar"] == pytest.approx(0.5)  # recall 1.0 and 0.0 over the two classes present
    recall = metrics.compute_per_class_recall()
    assert recall["male_sad"] == 1.0 and recall["male_angry"] == 0.0


def test_emotion_and_gender_views():
    metrics = StageMetrics()
    # true male_sad (0) predicted female_sad (6): emotion right, gender wrong.
    metrics.update(F.one_hot(torch.tensor([6]), 12).float(), torch.tensor([0]))
    values = metrics.compute()
    assert float(values["emotion_accuracy"]) == 1.0 and float(values["gender_accuracy"]) == 0.0
    assert float(values["accuracy"]) == 0.0

"""The network, the losses and the metrics."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torchmetrics.classification import MulticlassF1Score, MulticlassRecall

from ser.metrics import TRIVIAL_BINARY_ACCURACY, StageMetrics
from ser.models.components import reverse_within_length
from ser.models.crnn import CRNN
from ser.models.losses import BinaryLoss, CategoricalLoss
from ser.models.lstm import LSTMClassifier


def _padded_vs_alone(net: torch.nn.Module, lengths: torch.Tensor) -> None:
    torch.manual_seed(1)
    clips = [torch.randn(n, 8) for n in lengths.tolist()]
    batch = torch.full((len(clips), 40, 8), 123.0)  # garbage, not zeros, past each clip's end
    for i, c in enumerate(clips):
        batch[i, : len(c)] = c
    batched = net(batch, lengths)
    alone = torch.cat([net(c[None], torch.tensor([len(c)])) for c in clips])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["last", "mean", "attention"])
@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, False), (1, True), (2, True)])
def test_padding_never_changes_a_clips_output(pooling, layers, bidirectional):
    torch.manual_seed(0)
    net = LSTMClassifier(
        8, hidden_size=16, dense_size=8, num_layers=layers, bidirectional=bidirectional, pooling=pooling
    ).eval()
    _padded_vs_alone(net, torch.tensor([30, 17, 5]))


@pytest.mark.parametrize("strides", [[2, 2], [1], [3, 2]])
@pytest.mark.parametrize("pooling", ["attention", "mean", "last"])
def test_crnn_padding_never_changes_a_clips_output(strides, pooling):
    torch.manual_seed(0)
    net = CRNN(8, channels=12, kernel_size=5, strides=strides, hidden_size=10, dense_size=8, pooling=pooling).eval()
    # Lengths that do and do not divide by the strides, and one shorter than the kernel.
    _padded_vs_alone(net, torch.tensor([33, 17, 8, 3]))


def test_crnn_shortens_frames_by_its_strides_and_trains():
    torch.manual_seed(0)
    net = CRNN(8, channels=12, strides=[2, 2], hidden_size=10, dense_size=8, dropout=0.0, conv_dropout=0.0)
    assert net.out_lengths(torch.tensor([100, 7, 1])).tolist() == [25, 2, 1]
    x, lengths, y = torch.randn(6, 40, 8), torch.tensor([40, 35, 30, 20, 10, 5]), torch.arange(6)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = F.cross_entropy(net(x, lengths), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] / 4  # it can fit six clips: gradients reach every layer
    with pytest.raises(ValueError, match="model.kernel_size"):
        CRNN(8, kernel_size=4)


def test_attention_pooling_ignores_padding_and_weights_sum_to_one():
    from ser.models.components import Pooling

    pool = Pooling("attention", 4)
    x = torch.randn(2, 6, 4)
    lengths = torch.tensor([6, 2])
    mask = (torch.arange(6)[None] < lengths[:, None])[..., None]
    out = pool(x * mask, lengths, mask)
    x2 = x.clone()
    x2[1, 2:] = 1e3  # garbage past the end of clip 1 (masked by the caller, as networks do)
    torch.testing.assert_close(pool(x2 * mask, lengths, mask), out)
    # A single valid frame gets all the weight.
    single = pool(x, torch.tensor([1, 1]), (torch.arange(6)[None] < 1)[..., None].expand(2, 6, 1))
    torch.testing.assert_close(single, x[:, 0])


def test_checkpoints_from_before_the_components_still_load():
    net = LSTMClassifier(3, hidden_size=4, dense_size=5)
    old = {}
    for k, v in net.state_dict().items():  # the parameter names of the earlier flat LSTMClassifier
        old[k.replace("lstm.", "").replace("head.", "")] = v.clone()
    other = LSTMClassifier(3, hidden_size=4, dense_size=5)
    other.load_state_dict(old)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(other.state_dict()[k], v)


def test_last_pooling_reads_the_last_valid_frame():
    torch.manual_seed(0)
    net = LSTMClassifier(4, hidden_size=6, pooling="last").eval()
    x = torch.randn(1, 10, 4)
    state = net.encode(x, torch.tensor([7]))
    out, _ = net.lstm.forward_layers[0](net.normalizer(x[:, :7]))
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


def test_binary_label_smoothing_softens_targets_as_cross_entropy_does():
    logits, labels = torch.randn(5, 12), torch.tensor([0, 1, 2, 11, 6])
    target = F.one_hot(labels, 12).float() * 0.9 + 0.1 / 12
    expected = F.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(BinaryLoss(label_smoothing=0.1)(logits, labels), expected)
    with pytest.raises(ValueError, match="loss.label_smoothing"):
        BinaryLoss(label_smoothing=1.0)


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


def test_uar_and_macro_f1_leave_out_classes_the_data_do_not_hold():
    """A male-only test set (SAVEE, cross-corpus): predicting a female class costs the true class's recall,
    but the absent female class is not averaged in as a recall of 0 (torchmetrics' macro average would)."""
    truth = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5])  # the 6 male classes, 2 clips each
    guess = torch.tensor([0, 6, 1, 1, 2, 8, 3, 3, 4, 4, 5, 11])  # three answered with a female class
    metrics = StageMetrics()
    metrics.update(F.one_hot(guess, 12).float(), truth)
    values = {k: float(v) for k, v in metrics.compute().items()}
    assert values["uar"] == pytest.approx((0.5 + 1 + 0.5 + 1 + 1 + 0.5) / 6)
    f1 = [2 * 1 / (2 + 1), 1, 2 * 1 / (2 + 1), 1, 1, 2 * 1 / (2 + 1)]  # per male class: 2tp / (support + predicted)
    assert values["macro_f1"] == pytest.approx(sum(f1) / 6)
    recall = metrics.compute_per_class_recall()
    assert recall["male_sad"] == 0.5 and recall["male_angry"] == 1.0
    assert all(recall[c] is None for c in recall if c.startswith("female"))
    # With every class present the numbers are torchmetrics' own.
    truth, guess = torch.arange(60) % 12, torch.randint(0, 12, (60,), generator=torch.Generator().manual_seed(0))
    full = StageMetrics()
    full.update(F.one_hot(guess, 12).float(), truth)
    values = full.compute()
    assert 0 < float(values["uar"]) < 1
    assert float(values["uar"]) == pytest.approx(float(MulticlassRecall(12, average="macro")(guess, truth)))
    assert float(values["macro_f1"]) == pytest.approx(float(MulticlassF1Score(12, average="macro")(guess, truth)))


def test_emotion_and_gender_views():
    metrics = StageMetrics()
    # true male_sad (0) predicted female_sad (6): emotion right, gender wrong.
    metrics.update(F.one_hot(torch.tensor([6]), 12).float(), torch.tensor([0]))
    values = metrics.compute()
    assert float(values["emotion_accuracy"]) == 1.0 and float(values["gender_accuracy"]) == 0.0
    assert float(values["accuracy"]) == 0.0


def test_bf16_autocast_runs_the_training_steps_only() -> None:
    """trainer.precision=bf16-mixed: train steps in bfloat16; validation and test in float32, as ser.eval runs."""
    import lightning as L
    from torch.utils.data import DataLoader

    from ser.data.batching import collate
    from ser.models.module import SERModule

    torch.manual_seed(0)
    module = SERModule(
        model={"_target_": "ser.models.crnn.CRNN", "channels": 8, "hidden_size": 8, "dense_size": 8},
        loss={"_target_": "ser.models.losses.CategoricalLoss"},
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
        input_dim=6,
    )
    seen: list[tuple[bool, torch.dtype]] = []
    module.net.register_forward_hook(lambda net, args, out: seen.append((net.training, out.dtype)))
    items = [(torch.randn(30 + i, 6), i % 12, 0) for i in range(8)]
    loader = DataLoader(items, batch_size=4, collate_fn=collate)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        precision="bf16-mixed",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, loader, loader)
    trainer.test(module, loader, verbose=False)
    assert {dtype for training, dtype in seen if training} == {torch.bfloat16}
    assert {dtype for training, dtype in seen if not training} == {torch.float32}
    assert module.test_results["confusion"] and {p.dtype for p in module.parameters()} == {torch.float32}

"""fastnn.metrics: top_k_accuracy, precision, recall and f1 against hand computations and (when
installed) scikit-learn, accumulated over batches, with sample weights; their use in fit."""

import numpy as np
import pytest

import fastnn as fnn
from fastnn.metrics import F1, Precision, Recall, TopKAccuracy, get_metric


def result(metric, pred, target, weight=None, logits=False, batches=1):
    """The metric over (pred, target) fed in ``batches`` pieces."""
    metric.reset()
    for idx in np.array_split(np.arange(len(pred)), batches):
        metric.update(pred[idx], target[idx], None if weight is None else weight[idx], logits=logits)
    return metric.result()


# 3 classes, 6 samples: truth 0 0 1 1 2 2, argmax predictions 0 1 1 1 0 2
TRUTH = np.array([0, 0, 1, 1, 2, 2])
SCORES = np.array([[.8, .1, .1], [.3, .6, .1], [.2, .7, .1], [.1, .8, .1], [.5, .2, .3], [.1, .2, .7]])
# per class: tp = 1, 2, 1; predicted = 2, 3, 1; actual = 2, 2, 2
PRECISION = [1 / 2, 2 / 3, 1 / 1]
RECALL = [1 / 2, 2 / 2, 1 / 2]
F1_PER = [2 * p * r / (p + r) for p, r in zip(PRECISION, RECALL)]


@pytest.mark.parametrize("batches", [1, 4])
def test_multiclass_macro_micro_weighted_by_hand(batches):
    assert result(Precision(), SCORES, TRUTH, batches=batches) == pytest.approx(np.mean(PRECISION))
    assert result(Recall(), SCORES, TRUTH, batches=batches) == pytest.approx(np.mean(RECALL))
    assert result(F1(), SCORES, TRUTH, batches=batches) == pytest.approx(np.mean(F1_PER))
    # micro: pooled counts, tp 4 of 6 predictions and 6 labels
    for cls in (Precision, Recall, F1):
        assert result(cls(average="micro"), SCORES, TRUTH, batches=batches) == pytest.approx(4 / 6)
    # weighted by support (2, 2, 2): the macro mean here
    assert result(F1(average="weighted"), SCORES, TRUTH, batches=batches) == pytest.approx(np.mean(F1_PER))


def test_binary_single_output_scores_the_positive_class_by_hand():
    # one output: probabilities (threshold 0.5) or logits (threshold 0)
    prob = np.array([[.9], [.6], [.4], [.2], [.7]])
    truth = np.array([[1.], [0.], [1.], [0.], [1.]])
    # predictions 1 1 0 0 1: tp 2, fp 1, fn 1
    assert result(Precision(), prob, truth) == pytest.approx(2 / 3)
    assert result(Recall(), prob, truth) == pytest.approx(2 / 3)
    assert result(F1(), prob, truth) == pytest.approx(2 / 3)
    logits = np.log(prob / (1 - prob))
    assert result(F1(), logits, truth, logits=True) == pytest.approx(2 / 3)


def test_weights_count_as_repeated_samples():
    w = np.array([2, 1, 1, 3, 1, 1])
    repeat = np.repeat(np.arange(6), w)
    for cls in (Precision, Recall, F1, TopKAccuracy):
        metric = cls() if cls is not TopKAccuracy else cls(k=1)
        assert result(metric, SCORES, TRUTH, w.astype(float)) == pytest.approx(
            result(metric, SCORES[repeat], TRUTH[repeat]))


def test_zero_division_scores_zero_and_absent_classes_are_left_out():
    # class 2 never predicted: its precision is 0 (scikit-learn's default); class 3 (an extra
    # output) neither predicted nor present: not averaged
    pred = np.array([[1., 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0]])
    truth = np.array([0, 1, 2])
    assert result(Precision(), pred, truth) == pytest.approx((1 + 0.5 + 0) / 3)
    assert result(Recall(), pred, truth) == pytest.approx((1 + 1 + 0) / 3)
    assert np.isnan(Precision().result())


def test_top_k_accuracy_by_hand_and_ties():
    # label ranks: 1st, 2nd, 1st, 1st, 2nd (0.5 > 0.3), 1st
    assert result(TopKAccuracy(k=1), SCORES, TRUTH) == pytest.approx(4 / 6)
    assert result(TopKAccuracy(k=2), SCORES, TRUTH) == pytest.approx(6 / 6)
    # a tie is broken toward the lower class index: label 1 tied with class 0 ranks second
    tie = np.array([[0.5, 0.5, 0.0]])
    assert result(TopKAccuracy(k=1), tie, np.array([1])) == 0.0
    assert result(TopKAccuracy(k=1), tie, np.array([0])) == 1.0
    assert result(TopKAccuracy(k=5), tie, np.array([2])) == 1.0   # k >= classes: always
    with pytest.raises(ValueError, match="top_k_accuracy: needs one output per class"):
        TopKAccuracy().update(np.zeros((2, 1)), np.zeros((2, 1)))


def test_against_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    scores = rng.random((200, 5))
    truth = rng.integers(0, 5, 200)
    truth[truth == 4] = 3  # a class predicted but never true
    w = rng.random(200)
    guess = scores.argmax(axis=1)
    for average in ("macro", "micro", "weighted"):
        for cls, fn in ((Precision, metrics.precision_score), (Recall, metrics.recall_score), (F1, metrics.f1_score)):
            want = fn(truth, guess, average=average, sample_weight=w, zero_division=0)
            assert result(cls(average=average), scores, truth, w, batches=3) == pytest.approx(want, abs=1e-12)
    for k in (1, 2, 3):
        want = metrics.top_k_accuracy_score(truth, scores, k=k, labels=range(5), sample_weight=w)
        assert result(TopKAccuracy(k=k), scores, truth, w) == pytest.approx(want)
    prob = rng.random((100, 1))
    yb = (rng.random(100) < 0.4).astype(float)[:, None]
    for cls, fn in ((Precision, metrics.precision_score), (Recall, metrics.recall_score), (F1, metrics.f1_score)):
        assert result(cls(), prob, yb) == pytest.approx(fn(yb[:, 0], prob[:, 0] > 0.5))


def test_names_options_and_bad_options():
    assert [get_metric(n).name for n in ("top_k_accuracy", "precision", "recall", "f1")] == \
        ["top_k_accuracy", "precision", "recall", "f1"]
    assert get_metric("top_k_accuracy").k == 5 and get_metric("f1").average == "macro"
    with pytest.raises(ValueError, match=r"^TopKAccuracy: k must be"):
        TopKAccuracy(k=0)
    with pytest.raises(ValueError, match=r"^F1: unknown average 'samples'; choose one of"):
        F1(average="samples")


def test_fit_logs_the_new_metrics_with_validation():
    X, y = fnn.datasets.load_iris()
    X = fnn.data.Standardizer().fit_transform(X)
    model = fnn.Sequential([fnn.layers.Dense(3)], seed=0)
    trainer = fnn.Trainer(model, "cross_entropy", "adam", metrics=["f1", fnn.metrics.TopKAccuracy(k=2)],
                          batch_size=16, seed=0)
    h = trainer.fit(X, y, epochs=2, validation=(X, y), verbose=0)
    assert {"f1", "val_f1", "top_k_accuracy", "val_top_k_accuracy"} <= set(h.history)
    guess = trainer.predict(X)
    assert trainer.evaluate(X, y)["f1"] == pytest.approx(result(F1(), guess, y))
    assert h["val_f1"][-1] == pytest.approx(result(F1(), guess, y))


def test_issue12_evaluate_keeps_each_metrics_configuration():
    # issue 12 item 3: Trainer.evaluate rebuilt metrics as type(m)(), so TopKAccuracy(k=1) was
    # evaluated with the default k=5 (1.0 on iris instead of the top-1 accuracy).
    X, y = fnn.datasets.load_iris()
    X = fnn.data.Standardizer().fit_transform(X)
    model = fnn.Sequential([fnn.layers.Dense(3)], seed=0)
    trainer = fnn.Trainer(model, "cross_entropy", metrics=[TopKAccuracy(k=1), F1(average="micro"), "accuracy"],
                          seed=0)
    result = trainer.evaluate(X, y)
    top1 = (model.predict(X).argmax(axis=1) == y).mean()
    assert result["top_k_accuracy"] == pytest.approx(top1) and result["accuracy"] == pytest.approx(top1)
    assert result["top_k_accuracy"] < 1.0
    assert result["f1"] == pytest.approx(top1)  # micro F1 is the accuracy for single-label classes
    history = trainer.fit(X, y, epochs=1, validation=(X, y), verbose=0)
    assert history["val_top_k_accuracy"][-1] == pytest.approx(history["val_accuracy"][-1])


def test_clone_keeps_the_configuration_and_drops_the_state():
    m = TopKAccuracy(k=2)
    m.update(np.array([[0.1, 0.5, 0.4]]), np.array([0]))
    c = m.clone()
    assert type(c) is TopKAccuracy and c.k == 2 and np.isnan(c.result()) and m.result() == 0.0
    assert F1(average="weighted").clone().average == "weighted"


def test_greater_is_better_lives_in_the_metric():
    from fastnn.metrics import Metric, greater_is_better

    class Errors(Metric):
        name = "errors"
        greater_is_better = False

    assert greater_is_better("val_accuracy") and greater_is_better("r2") and not greater_is_better("mse")
    assert not greater_is_better("loss") and not greater_is_better("errors")
    assert greater_is_better("val_errors", [type("Hits", (Errors,), {"greater_is_better": True})()])


def test_a_custom_metric_without_its_config_says_how_to_fix_it():
    class AtLeast(fnn.metrics.Metric):
        name = "at_least"

        def __init__(self, threshold):
            self.threshold = threshold
            super().__init__()

        def update(self, pred, target, weight=None, logits=False):
            self._num += float((pred.max(axis=1) >= self.threshold).sum())
            self._den += len(pred)

    X, y = fnn.datasets.load_iris()
    trainer = fnn.Trainer(fnn.Sequential([fnn.layers.Dense(3)], seed=0), "cross_entropy", metrics=[AtLeast(0.5)])
    with pytest.raises(TypeError, match=r"AtLeast.clone: the metric cannot be rebuilt from get_config\(\) = \{\} "
                                        r"\(.*threshold.*\); return the constructor's arguments from get_config"):
        trainer.evaluate(X, y)
    AtLeast.get_config = lambda self: {"threshold": self.threshold}
    assert 0.0 <= trainer.evaluate(X, y)["at_least"] <= 1.0

"""1:N identification: the rank-1 maths on tiny arrays, the gallery-size threshold and the
hub's use of it, and the measured TPIR / FPIR on real faces (``ringwatch faces
eval-identification``; figures in docs/faces.md). The LFW images are embedded once per
session (conftest ``lfw_embedded``, shared with tests/test_faces_accuracy.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ringwatch.edge.faces_cli import LfwImage
from ringwatch.edge.identification_eval import (
    GALLERY_SIZES,
    Report,
    demo_probe_set,
    evaluate,
    lfw_faces_matrix,
    print_report,
)
from ringwatch.hub.inventory import MatchingConfig
from ringwatch.hub.match_threshold import match_threshold
from ringwatch.models.faces import FacePipeline
from ringwatch.models.identification import (
    CALIBRATED_THRESHOLDS,
    TopMatch,
    allowed_strangers,
    merge,
    rates,
    synthetic_distractors,
    threshold_at_fpir,
    threshold_for_gallery,
    top_match,
)
from ringwatch.models.sface import FLIP_TTA

# --- maths on literal arrays ----------------------------------------------------------------

E = np.eye(4, dtype=np.float32)


def test_top_match_finds_the_best_template_across_chunks() -> None:
    gallery = np.stack([E[0], E[1], 0.8 * E[2] + 0.6 * E[3]]).astype(np.float32)
    probes = np.stack([E[1], E[3]]).astype(np.float32)
    found = top_match(probes, gallery, np.array([7, 8, 9]), chunk=1)
    assert found.label.tolist() == [8, 9]
    assert found.similarity.tolist() == pytest.approx([1.0, 0.6])
    empty = top_match(probes, np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    assert empty.label.tolist() == [-1, -1]


def test_rates_count_right_wrong_and_strangers() -> None:
    mated = TopMatch(np.array([0.9, 0.7, 0.4], np.float32), np.array([1, 2, 3]))
    truth = np.array([1, 5, 3])
    strangers = TopMatch(np.array([0.2, 0.65, 0.1, 0.3], np.float32), np.array([1, 1, 2, 2]))
    r = rates(mated, truth, strangers, 0.6)
    assert (r.tpir, r.wrong_person, r.fpir) == pytest.approx((1 / 3, 1 / 3, 1 / 4))
    better = merge(mated, TopMatch(np.array([0.1, 0.95, 0.5], np.float32), np.array([0, 5, 0])))
    assert better.label.tolist() == [1, 5, 0]


def test_threshold_at_fpir_lets_at_most_the_allowed_share_through() -> None:
    scores = np.linspace(0.0, 0.99, 200).astype(np.float32)
    found = TopMatch(scores, np.zeros(200, np.int64))
    t = threshold_at_fpir(found, 0.01)
    assert float(np.mean(scores >= t)) <= 0.01
    assert float(np.mean(scores >= t - 0.01)) > 0.01  # and not needlessly strict


def test_allowed_strangers_at_a_confidence() -> None:
    assert allowed_strangers(684) == 6 and allowed_strangers(684, z=1.645) == 2
    assert allowed_strangers(100, z=1.645) == 0  # even 1 in 100 may be more than 1% beyond
    # the bound grows towards the measured share as the sample grows
    assert allowed_strangers(5_000, z=1.645) / 5_000 > allowed_strangers(1_000, z=1.645) / 1_000
    scores = np.linspace(0.0, 0.99, 684).astype(np.float32)
    t = threshold_at_fpir(TopMatch(scores, np.zeros(684, np.int64)), 0.01, z=1.645)
    assert int(np.sum(scores >= t)) == 2


def test_threshold_follows_the_gallery_size() -> None:
    sizes = [1, 10, 100, 1_000, 5_000, 10_000, 100_000, 1_000_000]
    values = [threshold_for_gallery(n) for n in sizes]
    assert values == sorted(values) and min(values) == CALIBRATED_THRESHOLDS[0][1]
    assert threshold_for_gallery(100_000) == CALIBRATED_THRESHOLDS[-1][1]
    assert threshold_for_gallery(1_000_000) > threshold_for_gallery(100_000)  # carried on
    table = ((100, 0.40), (10_000, 0.60))
    assert threshold_for_gallery(1_000, table) == pytest.approx(0.50)


def test_hub_threshold_fixed_in_the_config_or_following_the_gallery() -> None:
    fixed = MatchingConfig.model_validate({"threshold": 0.42})
    assert match_threshold(fixed, 100_000) == 0.42
    sized = MatchingConfig.model_validate({"gallery_size": 100_000})
    assert match_threshold(sized, 3) == threshold_for_gallery(100_000)
    assert match_threshold(MatchingConfig(), 40) == threshold_for_gallery(40)


def test_synthetic_distractors_are_unit_vectors_spread_like_the_reference() -> None:
    rng = np.random.default_rng(3)
    reference = rng.standard_normal((300, 16)).astype(np.float32) + 2.0
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    drawn = synthetic_distractors(reference, 2_000, seed=1)
    assert drawn.shape == (2_000, 16)
    assert np.allclose(np.linalg.norm(drawn, axis=1), 1.0, atol=1e-5)
    mean_cos = float((drawn @ reference.T).mean())
    assert mean_cos == pytest.approx(float((reference @ reference.T).mean()), abs=0.05)


# --- measured on real faces -----------------------------------------------------------------


@pytest.fixture(scope="module")
def report(
    face_pipeline: FacePipeline, lfw_embedded: dict[str, LfwImage], data_dir: Path
) -> Report:
    demo = demo_probe_set(
        face_pipeline, data_dir / "faces" / "watchlist_demo", lfw_faces_matrix(lfw_embedded)
    )
    return evaluate(lfw_embedded, demo)


@pytest.mark.data
@pytest.mark.slow
def test_shipped_thresholds_are_what_the_tuning_half_measures(report: Report) -> None:
    """CALIBRATED_THRESHOLDS is the table ``faces eval-identification`` measures."""
    measured = [t for _, t in report.calibration]
    shipped = [t for _, t in CALIBRATED_THRESHOLDS]
    assert [n for n, _ in report.calibration][1:] == list(GALLERY_SIZES)
    assert measured == pytest.approx(shipped, abs=0.006)


@pytest.mark.data
@pytest.mark.slow
def test_held_out_identities_at_the_shipped_threshold(report: Report) -> None:
    """Measured: TPIR 0.972 up to 10k templates, 0.965 at 100k; FPIR 0; nobody named
    wrongly. (Issue goal TPIR >= 0.98: not reached on LFW's hardest pairs, see faces.md.)"""
    assert len(report.held_out.mated) >= 140 and len(report.held_out.non_mated) >= 180
    for result in report.held_out_results:
        r = result.at(threshold_for_gallery(result.size))
        assert r.fpir <= 0.01, result.size
        assert r.wrong_person == 0.0, result.size
        assert r.tpir >= 0.955, (result.size, r.tpir)


@pytest.mark.data
@pytest.mark.slow
def test_a_fixed_threshold_fails_large_galleries(report: Report) -> None:
    """Why the threshold follows the size: 0.45 is fine for 1k templates, not for 100k."""
    small, large = report.held_out_results[1], report.held_out_results[-1]
    assert small.at(0.45).fpir <= 0.01 < large.at(0.45).fpir


@pytest.mark.data
@pytest.mark.slow
def test_held_out_identities_enrolled_from_one_photo(report: Report) -> None:
    """How a watch list is mostly enrolled: one photo per person. Measured at the shipped
    thresholds: TPIR 0.958 on its own 70 templates (0.5 fixed, as shipped before: 0.938),
    0.944 / 0.938 / 0.924 at 1k / 10k / 100k; FPIR 0; nobody named wrongly."""
    own, *filled = report.variants[(FLIP_TTA, 1)][1]
    r = own.at(threshold_for_gallery(own.size))
    assert r.tpir >= 0.95 and r.tpir > own.at(0.5).tpir, r
    for result in (own, *filled):
        r = result.at(threshold_for_gallery(result.size))
        assert r.fpir <= 0.01 and r.wrong_person == 0.0, result.size
        assert r.tpir >= 0.92, (result.size, r.tpir)


@pytest.mark.data
@pytest.mark.slow
def test_watch_list_demo_identification(report: Report) -> None:
    """Measured: all 15 found up to 10k templates; at 100k (0.543) one face of 15 at
    0.523 is not (0.933); FPIR <= 0.9%; nobody named wrongly."""
    assert report.demo is not None and len(report.demo.mated) == 15
    for result in report.demo_results:
        r = result.at(threshold_for_gallery(result.size))
        assert r.tpir >= (0.98 if result.size <= 10_000 else 0.93), result.size
        assert r.wrong_person == 0.0 and r.fpir <= 0.01, result.size


@pytest.mark.data
@pytest.mark.slow
def test_what_is_kept_helps(report: Report) -> None:
    """Two templates per person: kept (held-out TPIR at FPIR <= 1% up by >= 0.02 from 1k
    templates on). Flip averaging: off, because it measured no better; if a model change
    makes it help by more than a point, this says so."""

    def tpir(flip: bool, templates: int) -> list[float]:
        calibration, held = report.variants[(flip, templates)]
        return [r.at(t).tpir for (_, t), r in zip(calibration, held, strict=True)]

    one, two = tpir(FLIP_TTA, 1), tpir(FLIP_TTA, 2)
    assert all(b >= a for a, b in zip(one, two, strict=True))
    assert all(b - a >= 0.02 for a, b in zip(one[1:], two[1:], strict=True))
    gain = [f - p for p, f in zip(tpir(False, 2), tpir(True, 2), strict=True)]
    assert FLIP_TTA or max(gain) <= 0.01, gain


@pytest.mark.data
@pytest.mark.slow
def test_the_command_prints_every_table(report: Report, capsys: pytest.CaptureFixture[str]) -> None:
    """What ``ringwatch faces eval-identification`` prints: the calibration with the shipped
    thresholds, the held-out tables (two and one photos per person), the comparison and the
    demo."""
    print_report(report)
    out = capsys.readouterr().out
    for heading in (
        "FPIR <= 1% at 95% confidence",
        "held-out FPIR there",
        "held-out half, one photo enrolled per person",
        "own gallery at 0.5, the floor before 2026-12-04",
        "per configuration",
        "watch-list demo",
    ):
        assert heading in out, heading
    for _, threshold in CALIBRATED_THRESHOLDS:
        assert f"{threshold:.3f}" in out

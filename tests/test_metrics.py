"""The depth evaluation protocol against hand-computed values."""
import math

import numpy as np
import pytest

from depth_motion_tf import metrics


def test_seven_errors_match_hand_computation():
    gt = np.array([2.0, 4.0, 8.0])
    pred = np.array([2.4, 4.0, 16.0])
    errors = metrics.depth_errors(gt, pred)
    # |gt-pred|/gt = 0.2, 0, 1; (gt-pred)^2 = 0.16, 0, 64.
    assert errors["abs_rel"] == pytest.approx((0.2 + 0.0 + 1.0) / 3)
    assert errors["sq_rel"] == pytest.approx((0.16 / 2 + 0.0 + 64 / 8) / 3)
    assert errors["rmse"] == pytest.approx(math.sqrt((0.16 + 64) / 3))
    assert errors["rmse_log"] == pytest.approx(math.sqrt((math.log(1.2) ** 2 + math.log(2) ** 2) / 3))
    # max ratios 1.2, 1, 2: thresholds 1.25, 1.5625, 1.953125.
    assert errors["a1"] == pytest.approx(2 / 3)
    assert errors["a2"] == pytest.approx(2 / 3)
    assert errors["a3"] == pytest.approx(2 / 3)


def test_delta_uses_the_larger_of_both_ratios():
    errors = metrics.depth_errors(np.array([10.0, 10.0]), np.array([8.5, 12.0]))
    # ratios 10/8.5 = 1.176 < 1.25 and 12/10 = 1.2 < 1.25.
    assert errors["a1"] == 1.0


def test_garg_crop_of_a_kitti_sized_image():
    mask = metrics.crop_mask(375, 1242, metrics.GARG_CROP)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    # int(0.40810811*375)=153, int(0.99189189*375)=371, int(0.03594771*1242)=44, int(0.96405229*1242)=1197.
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (153, 370, 44, 1196)
    assert mask.sum() == (371 - 153) * (1197 - 44)


def test_valid_mask_excludes_missing_and_out_of_range_depth():
    gt = np.array([[0.0, 1e-3, 0.5], [79.9, 80.0, 95.0]])
    expected = np.array([[False, False, True], [True, False, False]])
    np.testing.assert_array_equal(metrics.valid_mask(gt), expected)


def test_bilinear_upsampling_uses_half_pixel_centres():
    up = metrics.resize_bilinear(np.array([[0.0, 1.0]]), 1, 4)
    # output centres map to input x = -0.25, 0.25, 0.75, 1.25 (clamped to [0, 1]).
    np.testing.assert_allclose(up, [[0.0, 0.25, 0.75, 1.0]])


def test_median_scaling_removes_a_global_scale():
    gt = np.array([[2.0, 3.0], [5.0, 7.0]])
    errors, ratio = metrics.evaluate_image(gt, gt * 3.0)
    assert ratio == pytest.approx(1 / 3)
    assert errors["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert errors["a1"] == 1.0


def test_median_ratio_is_the_ratio_of_medians():
    gt = np.array([[1.0, 2.0, 9.0]])
    pred = np.array([[4.0, 5.0, 6.0]])
    _, ratio = metrics.evaluate_image(gt, pred)
    assert ratio == pytest.approx(2.0 / 5.0)


def test_fixed_scale_without_median_scaling():
    gt = np.array([[2.0, 4.0]])
    errors, ratio = metrics.evaluate_image(gt, np.array([[1.0, 2.0]]), median_scaling=False, scale=2.0)
    assert ratio == 1.0
    assert errors["abs_rel"] == pytest.approx(0.0)


def test_prediction_is_clamped_to_max_depth():
    gt = np.array([[1.0, 1.0, 1.0, 79.0]])
    pred = np.array([[1.0, 1.0, 1.0, 100.0]])
    errors, _ = metrics.evaluate_image(gt, pred, median_scaling=False)
    # 100 is clamped to 80: only the last pixel is wrong, by 1/79.
    assert errors["abs_rel"] == pytest.approx((1.0 / 79.0) / 4)


def test_prediction_is_resized_to_ground_truth_size():
    gt = np.full((4, 6), 5.0)
    errors, ratio = metrics.evaluate_image(gt, np.full((2, 3, 1), 2.5))
    assert ratio == pytest.approx(2.0)
    assert errors["rmse"] == pytest.approx(0.0)


def test_crop_limits_the_evaluated_pixels():
    gt = np.array([[1.0, 1.0], [1.0, 1.0]])
    pred = np.array([[9.0, 9.0], [1.0, 2.0]])
    # crop keeps the bottom-left pixel only (rows [0.5, 1), cols [0, 0.5)).
    errors, _ = metrics.evaluate_image(gt, pred, crop=(0.5, 1.0, 0.0, 0.5), median_scaling=False)
    assert errors["abs_rel"] == 0.0


def test_no_valid_pixel_is_a_clear_error():
    with pytest.raises(ValueError, match="frame_7: no valid ground-truth pixel"):
        metrics.evaluate_image(np.zeros((3, 3)), np.ones((3, 3)), name="frame_7")


def test_nan_prediction_is_a_clear_error():
    pred = np.ones((3, 3))
    pred[1, 1] = np.nan
    with pytest.raises(ValueError, match="frame_7: prediction has 1 non-finite"):
        metrics.evaluate_image(np.ones((3, 3)), pred, name="frame_7")


def test_non_positive_median_prediction_is_a_clear_error():
    with pytest.raises(ValueError, match="median predicted depth"):
        metrics.evaluate_image(np.ones((2, 2)), np.zeros((2, 2)))


def test_summary_averages_over_images_not_pixels():
    first = metrics.depth_errors(np.array([1.0]), np.array([2.0]))  # abs_rel 1
    second = metrics.depth_errors(np.full(9, 1.0), np.full(9, 1.0))  # abs_rel 0, 9 pixels
    summary = metrics.summarize([first, second], [1.0, 3.0])
    assert summary["abs_rel"] == pytest.approx(0.5)
    assert summary["num_images"] == 2
    assert summary["ratio_median"] == pytest.approx(2.0)
    assert summary["ratio_std"] == pytest.approx(1.0)


def test_table_lists_metrics_in_paper_order():
    summary = dict(zip(metrics.METRIC_NAMES, [0.13, 0.95, 5.138, 0.209, 0.843, 0.948, 0.978]))
    header, values = metrics.format_table(summary).splitlines()
    assert header.split() == "abs_rel | sq_rel | rmse | rmse_log | a1 | a2 | a3".split()
    assert [float(v) for v in values.split("|")] == [0.13, 0.95, 5.138, 0.209, 0.843, 0.948, 0.978]


def test_region_abs_rel_splits_the_error_by_pixel_after_whole_image_scaling():
    gt = np.full((4, 8), 10.0)
    region = np.zeros((4, 8), bool)
    region[:, :2] = True  # a quarter of the image
    pred = np.where(region, 15.0, 5.0)
    inside, outside = metrics.region_abs_rel(gt, pred, region)
    # The median (of the other three quarters) scales by 10 / 5 = 2: exact elsewhere, 30 m inside.
    assert outside == pytest.approx(0.0)
    assert inside == pytest.approx(2.0)


def test_region_abs_rel_is_none_for_an_empty_side():
    gt = np.full((2, 2), 5.0)
    inside, outside = metrics.region_abs_rel(gt, gt * 3.0, np.zeros((2, 2), bool))
    assert inside is None and outside == pytest.approx(0.0)

"""Videos → triplet examples: three consecutive stored frames and their intrinsics.

A converter describes each monocular video as a :class:`VideoSource` (an
ordered stream of frames, the crop kept, the source intrinsics);
:func:`video_examples` loads the needed frames in parallel, groups them into
sliding triplets ``(t-1, t, t+1)`` and yields the stored examples, with the
single schema of :func:`depth_motion_tf.features.triplet_features`.
"""
import collections
import dataclasses
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from data_prep.frames import (
    CropBox,
    StoredFrame,
    mean_abs_difference,
    ordered_map,
    store_frame,
    stored_intrinsics,
)
from depth_motion_tf import features as F
from depth_motion_tf.errors import BadInputError
from depth_motion_tf.media import FrameRef, Intrinsics


@dataclasses.dataclass(frozen=True)
class VideoSource:
    """One monocular video to cut into triplets of consecutive frames.

    Attributes:
        video_id: stored ``video_id`` (per-video learned intrinsics).
        source: the file or folder the video comes from (named in errors).
        frames: zero-argument callable → ordered iterable of ``FrameRef``
            (consecutive in time, already strided).
        crop: ``(source_height, source_width) -> CropBox`` kept of each frame.
        intrinsics: ``Intrinsics`` of the source frames, None when unknown.
        centres: frame ids allowed as a triplet's middle frame; None = all.
        min_change: drop triplets where two consecutive frames differ by less
            than this mean absolute RGB difference ([0, 1] scale); 0 keeps all.
        extras: optional callable ``[StoredFrame] * 3 -> dict`` of further
            features (ground-truth depth).
    """

    video_id: str
    source: str
    frames: Callable[[], Iterable[FrameRef]]
    crop: Callable[[int, int], CropBox]
    intrinsics: Optional[Intrinsics] = None
    centres: Optional[frozenset] = None
    min_change: float = 0.0
    extras: Optional[Callable[[Sequence[StoredFrame]], dict]] = None


def consecutive_runs(items, index):
    """Splits an ordered list where the integer ``index(item)`` does not grow by exactly 1.

    Args:
        items: items sorted by ``index``.
        index: item → int frame number.
    Returns:
        list of lists of items with consecutive frame numbers.
    """
    runs = []
    for item in items:
        if runs and index(item) == index(runs[-1][-1]) + 1:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _with_need(refs, centres):
    """Yields ``(ref, needed)``: whether a frame belongs to a wanted triplet (one-frame lookahead)."""
    if centres is None:
        for ref in refs:
            yield ref, True
        return
    previous, current = None, None
    for ref in refs:
        if current is not None:
            yield current, _in_wanted_triplet(previous, current, ref, centres)
        previous, current = current, ref
    if current is not None:
        yield current, _in_wanted_triplet(previous, current, None, centres)


def _in_wanted_triplet(previous, current, following, centres):
    return any(r is not None and r.frame_id in centres for r in (previous, current, following))


def video_triplets(video, stored, workers):
    """Loads a video's needed frames in parallel and groups them into triplets.

    A frame that cannot be loaded, or whose size differs from the video's first
    frame, is returned as its ``BadInputError`` in the triplet's slot.
    A video of fewer than three frames raises ``BadInputError``.

    Args:
        video: :class:`VideoSource`.
        stored: ``StoredFormat`` of the frames.
        workers: threads for loading/resizing/encoding.
    Yields:
        ``[StoredFrame or BadInputError] * 3`` for every wanted centre frame, in order.
    """

    def process(ref_and_need):
        ref, needed = ref_and_need
        if not needed:
            return ref, None
        try:
            return ref, store_frame(ref, video.crop, stored)
        except BadInputError as error:
            return ref, error

    window = collections.deque(maxlen=F.FRAMES_PER_EXAMPLE)
    first, count = None, 0
    stream = _with_need(video.frames(), video.centres)
    for ref, frame in ordered_map(process, stream, workers):
        count += 1
        if isinstance(frame, StoredFrame):
            first = first or frame
            frame = _same_size_or_error(frame, first)
        window.append((ref, frame))
        if len(window) == F.FRAMES_PER_EXAMPLE and (
            video.centres is None or window[1][0].frame_id in video.centres
        ):
            yield [f for _, f in window]
    if count < F.FRAMES_PER_EXAMPLE:
        raise BadInputError(
            video.source,
            f"has {count} frame(s); a triplet needs {F.FRAMES_PER_EXAMPLE} consecutive frames",
        )


def _same_size_or_error(frame, first):
    if frame.source_size == first.source_size:
        return frame
    (h, w), (h0, w0) = frame.source_size, first.source_size
    return BadInputError(
        frame.name,
        f"frame is {w}x{h} pixels but {first.name} is {w0}x{h0}; "
        "all frames of a video must have one size",
    )


def triplet_example(video, triplet, stored):
    """The stored example (features of ``triplet_features``) of three stored frames.

    Args:
        video: the :class:`VideoSource` the frames come from.
        triplet: three ``StoredFrame``.
        stored: ``StoredFormat`` of the frames.
    Returns:
        ``(key, example)``: key ``"<video_id>/<middle frame id>"``, example a dict.
    """
    if video.intrinsics is None:
        intrinsics, known = np.zeros(4, np.float32), False
    else:
        source_height, source_width = triplet[0].source_size
        intrinsics = stored_intrinsics(
            video.intrinsics.in_pixels(source_height, source_width),
            video.crop(source_height, source_width),
            stored.height,
            stored.width,
        )
        known = True
    example = {
        F.RGB: [frame.png for frame in triplet],
        F.INTRINSICS: intrinsics,
        F.INTRINSICS_KNOWN: known,
        F.VIDEO_ID: video.video_id,
        F.FRAME_IDS: [frame.frame_id for frame in triplet],
    }
    if video.extras is not None:
        example.update(video.extras(triplet))
    return f"{video.video_id}/{triplet[1].frame_id}", example


def is_static(triplet, min_change):
    """Whether two consecutive frames of a triplet differ by less than ``min_change``."""
    return min(
        mean_abs_difference(triplet[0].pixels, triplet[1].pixels),
        mean_abs_difference(triplet[1].pixels, triplet[2].pixels),
    ) < min_change


def video_examples(video, stored, workers, on_bad):
    """All ``(key, example)`` pairs of one video.

    Args:
        video: :class:`VideoSource`.
        stored: ``StoredFormat`` of the frames.
        workers: threads for frame loading.
        on_bad: called with the ``BadInputError`` of a triplet that has a bad
            frame (raise it to stop, or record it to skip the triplet).
    Yields:
        ``(key, example)`` for a builder's ``_generate_examples``.

    Bad input that spoils the whole video (unreadable file, too few frames) is
    passed to ``on_bad`` once and ends the video.
    """
    try:
        for triplet in video_triplets(video, stored, workers):
            errors = [frame for frame in triplet if isinstance(frame, BadInputError)]
            if errors:
                on_bad(errors[0])
            elif not (video.min_change > 0 and is_static(triplet, video.min_change)):
                yield triplet_example(video, triplet, stored)
    except BadInputError as error:
        on_bad(error)
